"""How every syncctl command fails: one line on stderr naming what to fix, and an exit code
(1: it ran and failed; 2: it could not run), never a traceback (invariant 4)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

import psycopg2
import requests
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape

from sync_pipeline import failures
from sync_pipeline.errors import SyncError

log = logging.getLogger(__name__)
err_console = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, printed as text (a reason may hold brackets Rich would read as
    markup), then exit with `code`."""
    err_console.print(f"[bold red]syncctl:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors, and PostgreSQL's, into one clear line and their exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SyncError as exc:
            fail(str(exc), exc.exit_code)
        except (sa.exc.SQLAlchemyError, psycopg2.Error) as exc:
            log.debug("the database refused a command", exc_info=True)
            if failures.undefined_table(exc):
                fail(
                    "the state schema is missing or older than this syncctl: "
                    "run `syncctl migrate` (a worker also migrates when it starts)",
                    2,
                )
            fail(failures.describe(exc), 1)
        except TimeoutError as exc:
            # A wait of a command for its own processes ran out (the demo's worker, flows or
            # webhook service): the message says what and which log to read.
            fail(str(exc) or "timed out", 1)
        except requests.RequestException as exc:
            # A server we call directly (the sandbox's control API in the demo, a health
            # URL) went away: say which, without its query (it may carry a token).
            log.debug("a request failed", exc_info=True)
            where = _where(exc)
            fail(f"{where}did not answer: {type(exc).__name__}", 1)

    return wrapper


def _where(exc: requests.RequestException) -> str:
    request = exc.request
    if request is None or not request.url:
        return ""
    parts = urlsplit(str(request.url))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path} "
