"""Child processes of syncctl (Celery worker, Beat, Flower): started and stopped in order.

Each child runs in its own session, so a terminal's Ctrl-C reaches only syncctl, which then
stops the children first and the embedded engines last; nothing is left behind. Each child
also dies with syncctl when syncctl cannot stop it (SIGKILL, the OOM killer): the kernel sends
it SIGKILL (PR_SET_PDEATHSIG), so no worker goes on consuming tasks beside the one a
supervisor starts next. Its tasks come back (acks_late, reject_on_worker_lost) and their
effect keys keep them from doing anything twice.

With no embedded engine to look after (REDIS_URL and DATABASE_URL set, as in production),
`syncctl worker`, `beat` and `flower` do not keep a child at all: they become the Celery
program (exec), so a supervisor's signals reach it directly and there is no parent to outlive.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NoReturn

from sync_pipeline.devtools.embedded import die_with_parent
from sync_pipeline.services import Services, export_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def celery_argv(argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *argv]


def child_env(resolved: Services) -> dict[str, str]:
    env = {**os.environ, **resolved.env()}
    # The worker imports workers.app from the project root, wherever syncctl was started.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def child_process(
    argv: Sequence[str], resolved: Services, log: Path | None = None
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A session_process with the environment of `resolved`'s servers."""
    return session_process(argv, child_env(resolved), log)


@contextmanager
def session_process(
    argv: Sequence[str], env: Mapping[str, str], log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session, its output appended to `log`, stopped with SIGTERM (then
    SIGKILL) when the block ends, and killed by the kernel if we die first."""
    out = open(log, "ab") if log else None  # noqa: SIM115 - closed below
    parent = os.getpid()
    try:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent),  # noqa: PLW1509 - one syscall, no locks
        )
        try:
            yield proc
        finally:
            stop_process(proc)
    finally:
        if out:
            out.close()


def free_port() -> int:
    """A TCP port free on loopback now, for a child server to listen on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL after `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_foreground(argv: Sequence[str], resolved: Services) -> int:
    """Run a long-lived program (Celery worker, Beat, Flower) until it exits or we get SIGINT
    or SIGTERM; returns its exit code. Without embedded engines this process becomes it and
    never returns; with them, it runs as a child that dies with us (module docstring)."""
    if not resolved.started:
        become(argv, child_env(resolved))
    export_env(resolved)
    stopping: list[int] = []

    def note(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with child_process(argv, resolved) as proc:
            while proc.poll() is None and not stopping:
                time.sleep(0.2)
            code = proc.poll()
        return 0 if stopping else int(code or 0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def become(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv` (same pid): what a supervisor signals, or kills, is
    the program itself. Our sockets close on exec (Python opens them close-on-exec)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - our interpreter and arguments
