"""`syncctl sandbox ...`: run the vendor emulators, seed them, inspect and break them.

`up` serves; `seed`, `info` and `env` also work with the server stopped (they use the store
file); `ledger`, `calls`, `fault` and `press` talk to the running server's control port, with
the admin token read from the store in --data-dir. Exit codes: 0 ok, 1 the command ran and
failed, 2 usage, the server unreachable or the token refused. Errors are one line.

Credential values are printed only where asked for by name: `env` (for eval) and `info
--json`; the tables of `up` and `info` name each credential and say where to read it.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import requests
from rich.console import Console
from rich.table import Table

from sync_pipeline.devtools.sandbox.core import FAULT_KINDS, SandboxStore, stored_admin_token
from sync_pipeline.devtools.sandbox.registry import (
    DEFAULT_PORT_BASE,
    EMULATORS,
    RegistryError,
    load_registry,
    port_for,
)
from sync_pipeline.devtools.sandbox.seed import (
    DEFAULT_APPROVALS,
    DEFAULT_CHECKIN_DAYS,
    DEFAULT_PROGRESS_PER_PROJECT,
    DEFAULT_SEED,
    seed_all,
)
from sync_pipeline.devtools.sandbox.server import (
    PortInUse,
    SandboxServer,
    build_emulators,
    default_data_dir,
    describe,
    env_vars,
    store_path,
)

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
CONTROL_TIMEOUT_S = 30.0


def fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]syncctl sandbox:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def where_options(func: F) -> F:
    """--data-dir and --port-base, on every command, defaulting from the environment."""
    func = click.option(
        "--port-base",
        type=int,
        envvar="SANDBOX_PORT_BASE",
        default=DEFAULT_PORT_BASE,
        show_default=True,
        help="Control port; emulators listen on the next ports (env SANDBOX_PORT_BASE).",
    )(func)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="SYNC_DATA_DIR",
        default=default_data_dir(),
        show_default=True,
        help="The sandbox keeps its state in <data-dir>/sandbox/sandbox.db (env SYNC_DATA_DIR).",
    )(func)


CREDENTIALS_HINT = (
    "credential values: `syncctl sandbox env` prints them as SANDBOX_<PLATFORM>_<NAME>"
    ' (eval "$(syncctl sandbox env)" exports them), `syncctl sandbox info --json` as JSON'
)


class Control:
    """The running server's control API, with the admin token from the store in `data_dir`;
    unreachable or refused means exit 2 with what to do."""

    def __init__(self, port_base: int, data_dir: Path) -> None:
        self.url = f"http://127.0.0.1:{port_for('control', port_base)}"
        self.store = store_path(data_dir)
        self.token = stored_admin_token(self.store)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON body; exits when the server is not running or says no."""
        found = self.call_if_running(method, path, **kwargs)
        if found is None:
            fail(f"no sandbox is running at {self.url}; start it with: syncctl sandbox up", 2)
        return found

    def call_if_running(self, method: str, path: str, **kwargs: Any) -> Any | None:
        """As call, but None when nothing listens on the control port."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            answer = requests.request(
                method, self.url + path, headers=headers, timeout=CONTROL_TIMEOUT_S, **kwargs
            )
        except requests.ConnectionError:
            return None
        except requests.Timeout:
            fail(f"the sandbox at {self.url} did not answer within {CONTROL_TIMEOUT_S:g} s", 1)
        if answer.status_code == 401:
            found = (
                f"the admin token in {self.store}" if self.token else f"no store at {self.store}"
            )
            fail(
                f"the sandbox at {self.url} refused {found}; pass the --data-dir (or"
                " SYNC_DATA_DIR) that `syncctl sandbox up` was started with",
                2,
            )
        try:
            body = answer.json()
        except ValueError:
            fail(f"the sandbox at {self.url} answered HTTP {answer.status_code}, not JSON", 1)
        if answer.status_code >= 400:
            detail = body.get("error") if isinstance(body, dict) else body
            fail(f"{method} {path}: HTTP {answer.status_code}: {detail}", 1)
        return body


def _details(data_dir: Path, port_base: int) -> tuple[dict[str, dict[str, Any]], bool]:
    """Every platform's base URL and credentials, and whether the server is running: from the
    server when it runs (its URLs may name another --host), else from the store."""
    control = Control(port_base, data_dir)
    served = control.call_if_running("GET", "/_sandbox/info")
    if served is not None:
        return served, True
    store = SandboxStore(store_path(data_dir))
    try:
        emulators = build_emulators(store, load_registry(), port_base)
    except RegistryError as exc:
        fail(str(exc), 1)
    return describe(emulators, control.url, store.admin_token()), False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def sandbox() -> None:
    """Local emulators of WeCom, DingTalk, Feishu, Agora Chat, Slack and the OA, for dry runs.

    Each emulator speaks its vendor's documented HTTP contract on its own port (control API on
    --port-base, then oa +1, wecom +2, dingtalk +3, feishu +4, agora +5, seeyon +6, slack +7)
    and records every write it accepts in a ledger.
    """


@sandbox.command()
@where_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the emulators listen on; the control API stays on 127.0.0.1.",
)
def up(data_dir: Path, port_base: int, host: str) -> None:
    """Serve every emulator until Ctrl-C or SIGTERM (then exit 0)."""
    try:
        server = SandboxServer(store_path(data_dir), port_base, host)
    except RegistryError as exc:
        fail(str(exc), 1)

    def ready() -> None:
        _print_info(server.info(), running=True)
        if server.registry.missing:
            err_console.print(f"not in this build: {', '.join(server.registry.missing)}")
        console.print(f"state: {server.store.path}   stop with Ctrl-C", highlight=False)

    try:
        asyncio.run(server.serve(on_ready=ready))
    except PortInUse as exc:
        fail(f"{exc}; is a sandbox already running? see: syncctl sandbox info", 2)


@sandbox.command()
@where_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(data_dir: Path, port_base: int, as_json: bool) -> None:
    """Base URL and credential names of every emulator; --json adds the credentials' values
    (from the store when the server is down)."""
    details, running = _details(data_dir, port_base)
    if as_json:
        click.echo(json.dumps(details, indent=2, ensure_ascii=False))
    else:
        _print_info(details, running=running)


@sandbox.command()
@where_options
def env(data_dir: Path, port_base: int) -> None:
    """Print `export SANDBOX_...=...` lines for the shipped connectors config.

    Use: eval "$(syncctl sandbox env)"
    """
    details, _ = _details(data_dir, port_base)
    for name, value in sorted(env_vars(details).items()):
        click.echo(f"export {name}={shlex.quote(value)}")


def _print_info(details: dict[str, dict[str, Any]], *, running: bool) -> None:
    """Names, never values: this table lands in terminals, logs and screenshots."""
    state = "running" if running else "not running (start it with: syncctl sandbox up)"
    table = Table(title=f"Sandbox: {state}")
    table.add_column("platform")
    table.add_column("base URL")
    table.add_column("credentials")
    for platform, entry in details.items():
        creds = ", ".join(entry.get("credentials", {}))
        table.add_row(f"{platform}\n[dim]{entry.get('title', '')}[/]", entry["base_url"], creds)
    console.print(table)
    console.print(CREDENTIALS_HINT, highlight=False, markup=False, soft_wrap=True)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 64 else f"{text[:30]}...{text[-12:]} ({len(text)} chars)"


@sandbox.command()
@where_options
@click.option("--seed", "seed_number", type=int, default=DEFAULT_SEED, show_default=True)
@click.option(
    "--approvals", type=click.IntRange(min=0), default=DEFAULT_APPROVALS, show_default=True
)
@click.option(
    "--checkin-days", type=click.IntRange(min=0), default=DEFAULT_CHECKIN_DAYS, show_default=True
)
@click.option(
    "--progress",
    type=click.IntRange(min=0),
    default=DEFAULT_PROGRESS_PER_PROJECT,
    show_default=True,
    help="Progress records per project.",
)
def seed(
    data_dir: Path,
    port_base: int,
    seed_number: int,
    approvals: int,
    checkin_days: int,
    progress: int,
) -> None:
    """Replace every emulator's data with the world of --seed (works with the server up or down)."""
    started = time.monotonic()
    store = SandboxStore(store_path(data_dir))
    try:
        counts = seed_all(
            store,
            seed=seed_number,
            approvals=approvals,
            checkin_days=checkin_days,
            progress_per_project=progress,
            emulators=build_emulators(store, load_registry(), port_base),
        )
    except RegistryError as exc:
        fail(str(exc), 1)
    elapsed = time.monotonic() - started
    table = Table(title=f"Seeded world {seed_number} in {elapsed:.1f} s")
    table.add_column("platform")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for platform, kinds in counts.items():
        for kind, count in kinds.items():
            table.add_row(platform, kind, f"{count:,}")
    console.print(table)


@sandbox.command()
@where_options
@click.option("--platform", type=click.Choice(sorted(EMULATORS)), help="Only this platform.")
@click.option("--since", type=int, default=0, show_default=True, help="Entries after this seq.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ledger(data_dir: Path, port_base: int, platform: str | None, since: int, as_json: bool) -> None:
    """Every write the emulators accepted, oldest first."""
    params: dict[str, Any] = {"since_seq": since}
    if platform:
        params["platform"] = platform
    control = Control(port_base, data_dir)
    entries = control.call("GET", "/_sandbox/ledger", params=params)["entries"]
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Ledger: {len(entries)} writes")
    for column in ("seq", "time (UTC)", "platform", "endpoint", "caller", "idem key"):
        table.add_column(column, no_wrap=column in ("endpoint", "time (UTC)"))
    table.add_column("body", no_wrap=True, overflow="ellipsis")
    for e in entries:
        at = datetime.fromtimestamp(e["ts_ms"] / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        body = json.dumps(e["body"], ensure_ascii=False)
        table.add_row(
            str(e["seq"]),
            at,
            e["platform"],
            e["endpoint"],
            e["caller"],
            e["idem_key"] or "",
            _short(body),
        )
    console.print(table)


@sandbox.command()
@where_options
@click.option("--platform", type=click.Choice(sorted(EMULATORS)), help="Only this platform.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def calls(data_dir: Path, port_base: int, platform: str | None, as_json: bool) -> None:
    """How many calls each endpoint got (faulted ones included)."""
    params = {"platform": platform} if platform else {}
    counted = Control(port_base, data_dir).call("GET", "/_sandbox/calls", params=params)["calls"]
    if as_json:
        click.echo(json.dumps(counted, indent=2))
        return
    table = Table(title="Calls")
    table.add_column("platform endpoint")
    table.add_column("calls", justify="right")
    for endpoint, count in sorted(counted.items()):
        table.add_row(endpoint, str(count))
    console.print(table)


@sandbox.command()
@where_options
@click.argument("platform", type=click.Choice(sorted(EMULATORS)))
@click.argument("kind", type=click.Choice(FAULT_KINDS), required=False)
@click.option("--rate", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option(
    "--for", "for_s", type=click.FloatRange(min=0), help="Seconds; default until cleared."
)
@click.option("--param", "params", multiple=True, help="KEY=VALUE, e.g. ms=2000 for latency.")
@click.option(
    "--clear", is_flag=True, help="Remove this fault (all of the platform's without KIND)."
)
def fault(
    data_dir: Path,
    port_base: int,
    platform: str,
    kind: str | None,
    rate: float,
    for_s: float | None,
    params: tuple[str, ...],
    clear: bool,
) -> None:
    """Inject (or --clear) a fault: latency, error5xx, ratelimit, token_expire, malformed,
    truncated, duplicate_webhook, out_of_order, down or applied_no_answer (a write is made,
    its answer lost: --param how=drop|late, delay_ms=N, count=N)."""
    control = Control(port_base, data_dir)
    if clear:
        query = {"platform": platform, **({"kind": kind} if kind else {})}
        cleared = control.call("DELETE", "/_sandbox/fault", params=query)["cleared"]
        console.print(f"cleared {cleared} fault(s) on {platform}")
        return
    if kind is None:
        raise click.UsageError("KIND is required unless --clear is given")
    parsed: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    body = {"platform": platform, "kind": kind, "rate": rate, "for_s": for_s, "params": parsed}
    answer = control.call("POST", "/_sandbox/fault", json=body)
    if kind == "token_expire":
        console.print(f"expired {answer['expired_tokens']} {platform} token(s)")
    else:
        until = f"for {for_s:g} s" if for_s is not None else "until cleared"
        if "count" in parsed:
            until = f"for {parsed['count']} write(s), {until}"
        console.print(f"{platform}: {kind} at rate {rate:g} {until}")


@sandbox.command()
@where_options
@click.argument("platform", type=click.Choice(sorted(EMULATORS)))
@click.option("--json", "action", required=True, help="The action, as a JSON object.")
def press(data_dir: Path, port_base: int, platform: str, action: str) -> None:
    """Act as a user of PLATFORM (press a card button, approve in the OA...)."""
    try:
        parsed = json.loads(action)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--json")
    control = Control(port_base, data_dir)
    answer = control.call("POST", f"/_sandbox/{platform}/press", json=parsed)
    click.echo(json.dumps(answer, indent=2, ensure_ascii=False))


@sandbox.command()
@where_options
@click.argument("platform", type=click.Choice(sorted(EMULATORS)))
@click.argument("values", nargs=-1, required=True, metavar="KEY=VALUE...")
def settings(data_dir: Path, port_base: int, platform: str, values: tuple[str, ...]) -> None:
    """Set settings of PLATFORM's emulator, e.g. where its callbacks go: `oa webhook_url=URL`,
    `wecom callback_url=URL` (WeCom sends cards with buttons only once it has one). Each
    emulator's module lists its settings."""
    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not (sep and key):
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        parsed[key] = value
    control = Control(port_base, data_dir)
    answer = control.call("POST", f"/_sandbox/{platform}/settings", json=parsed)
    console.print(f"{platform}: set {', '.join(answer['settings'])}")


if __name__ == "__main__":
    sandbox()
