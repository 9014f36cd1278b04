"""The package as users get it, and the compose stack as compose runs it.

The sdist and the wheel are built as a release builds them (`python -m build`: the sdist, then
the wheel from it) and as the Dockerfile builds the image's wheel (its first stage's files and
command). The image's wheel goes into a fresh virtual environment: not editable, the source tree
nowhere on its path, every process started in a directory of its own with a clean environment.
From there run `syncctl migrate` and `check`, one flow end to end on the sandbox, and each
docker-compose service's own command with the environment compose gives it, until its own
healthcheck passes. What compose's network and volumes provide is stood in for: the service
names `redis` and `postgres` are this test's servers, `sandbox` is 127.0.0.1, each volume is a
directory, and each fixed port is a free one here (the machine is shared with other test runs),
rewritten alike in the command and its healthcheck.
"""

from __future__ import annotations

import collections
import importlib.metadata
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from sync_pipeline.devtools.sandbox.registry import free_port_base
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.processes import free_port
from sync_pipeline.state.migrate import current_revision, head_revision
from tests.compose import (
    dockerfile,
    healthcheck_argv,
    image_services,
    interpolated,
    load,
    read_env_file,
    seconds,
)
from tests.conftest import ROOT, wait_for
from tests.e2e.spine import FLOW, SEED, expected_wecom_messages, stop, wecom_sends_in

pytestmark = pytest.mark.slow

PACKAGES = ("sync_pipeline", "workers")
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".sync-data", ".*_cache", "__pycache__", "*.py[cod]", "*.egg-info", "build"
)
COMPOSE = load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
LONG_RUNNING = sorted(n for n, s in image_services().items() if s.get("restart") != "no")
# Services that need the operator's own configuration before they can be healthy: the events
# connection serves a connector with an `events:` section, which the shipped config has none
# of; with the shipped config it must refuse in one line, naming the connector (its own test).
NEEDS_CONFIGURING = {"events-connect"}
HEALTHY_AS_SHIPPED = [name for name in LONG_RUNNING if name not in NEEDS_CONFIGURING]
APPROVALS = 60
SANDBOX_TRIAL = [  # README.md's `docker compose exec -T sandbox syncctl ...`, at our seed and size
    ["sandbox", "seed", "--seed", str(SEED), "--approvals", str(APPROVALS)],
    ["sandbox", "settings", "oa", "webhook_url=http://webhooks:18700/webhooks/sandbox_oa"],
    ["sandbox", "settings", "wecom", "callback_url=http://webhooks:18700/webhooks/sandbox_wecom"],
]
DOTENV = {  # compose's .env, as deploy/compose.env.example asks for it
    "POSTGRES_PASSWORD": "stand-in: the test's PostgreSQL takes its place",
    "FLOWER_BASIC_AUTH": "admin:wheel-test",
    "SYNC_ADMIN_TOKEN": "wheel-test-admin-token-0123456789",  # the admin API needs one
    "COMPOSE_PROFILES": "sandbox",
}


def run(
    argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


# -- the builds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path  # from the sdist, as a release is made
    image_wheel: Path  # as the Dockerfile's first stage makes it
    log: str  # what `python -m build` printed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = tmp_path_factory.mktemp("source") / "sync_pipeline"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    # Without PYTHONDONTWRITEBYTECODE, whose only effect is a warning about byte-compiling.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], dist, env)
    [sdist], [wheel] = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    image_wheel = build_as_the_dockerfile(tmp_path_factory.mktemp("image"))
    return Built(sdist, wheel, image_wheel, done.stdout + done.stderr)


def build_as_the_dockerfile(workdir: Path) -> Path:
    """The first stage: its COPY instructions into a directory, then its RUN there."""
    context, wheels = workdir / "src", workdir / "wheels"
    context.mkdir()
    stage = [i for i in dockerfile() if i.stage == 0]
    for instruction in (i for i in stage if i.keyword == "COPY"):
        *sources, destination = instruction.args.split()
        for name in sources:  # a directory's contents go into the destination, as COPY does
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, context / destination, ignore=NOT_SOURCE)
            elif destination.endswith("/"):
                shutil.copy(ROOT / name, context / destination / name)
            else:
                shutil.copy(ROOT / name, context / destination)
    [command] = [shlex.split(i.args) for i in stage if i.keyword == "RUN"]
    assert command[:2] == ["pip", "wheel"], command
    command = [str(wheels) if arg == "/wheels" else arg for arg in command]
    run([sys.executable, "-m", *command], cwd=context)
    [wheel] = list(wheels.glob("*.whl"))
    return wheel


def source_files() -> set[str]:
    """Every file of the packages in the source tree, as a path inside a wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if ".dist-info/" not in n}


def test_given_the_release_build_then_setuptools_warns_of_nothing(built: Built) -> None:
    # "WARNING Package 'sync_pipeline.state.migrations' is absent from the `packages`
    # configuration" was the sign that the wheel lacked the migrations.
    warnings = [line for line in built.log.splitlines() if re.search(r"(?i)\bwarning\b", line)]

    assert warnings == []


@pytest.mark.parametrize("which", ["wheel", "image_wheel"])
def test_given_a_wheel_then_it_holds_every_file_of_the_packages(built: Built, which: str) -> None:
    assert wheel_files(getattr(built, which)) == source_files()


def test_given_the_sdist_then_it_holds_what_a_deployment_starts_from(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    needed = {
        "Dockerfile",
        "docker-compose.yml",
        "deploy/compose.env.example",
        "deploy/connectors.env.example",
        "config/connectors.yaml",
        "config/examples/production/connectors.yaml",
    }

    assert needed | source_files() <= names


# -- the installed wheel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh virtual environment holding the image's wheel. Its dependencies resolve
    from the wheel's own metadata, pinned to the versions this environment runs (so the install
    takes seconds and tests what CI tests)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name != "sync-pipeline":
            pins.setdefault(name, dist.version)
    constraints = root.parent / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), "utf-8")
    python = root / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    run([*install, "--constraint", str(constraints), str(built.image_wheel)], root.parent, None)
    return root / "bin"


@dataclass
class Stack:
    """The compose stack's services, run from the installed wheel as compose would run them."""

    bin: Path
    home: Path  # each service's working directory, as WORKDIR in the image
    volumes: Path  # a directory per named volume
    dotenv: dict[str, str]
    redis_url: str
    database_url: str
    ports: dict[str, str]  # a port of the compose file -> the free port serving it here

    # -- what compose hands a service --------------------------------------------------------
    def mounts(self, name: str) -> dict[str, Path]:
        found = {}
        for volume in interpolated(SERVICES[name].get("volumes", []), self.dotenv):
            source, target, *_ = volume.split(":")
            found[target] = self.volumes / source if source in COMPOSE["volumes"] else Path(source)
            found[target].mkdir(parents=True, exist_ok=True)
        return found

    def env(self, name: str) -> dict[str, str]:
        """The service's env_file, then its environment (which wins), then the stand-ins for
        what compose's network and volumes provide."""
        service = SERVICES[name]
        env: dict[str, str] = {}
        for path in interpolated(service.get("env_file", []), self.dotenv):
            env |= read_env_file(Path(path))
        env |= {
            k: str(v) for k, v in interpolated(service.get("environment", {}), self.dotenv).items()
        }
        stand_ins = {"REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url}
        env |= {k: v for k, v in stand_ins.items() if k in env}
        mounts = self.mounts(name)
        env = {k: str(mounts.get(v, v)) for k, v in env.items()}
        return {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "HOSTNAME": socket.gethostname(),  # Docker sets it to the container's host name
            **env,
        }

    def _here(self, text: str) -> str:
        """The compose file's fixed ports as the free ports that serve them here."""
        return re.sub(r"(?<!\d)\d{4,5}(?!\d)", lambda m: self.ports.get(m[0], m[0]), text)

    def command(self, name: str) -> list[str]:
        """ENTRYPOINT ["syncctl"] and the service's command, `--host <service>` as 127.0.0.1."""
        argv = [self._here(arg) for arg in interpolated(SERVICES[name]["command"], self.dotenv)]
        for i, arg in enumerate(argv[:-1]):
            if arg == "--host" and argv[i + 1] in SERVICES:
                argv[i + 1] = "127.0.0.1"
        return [str(self.bin / "syncctl"), *argv]

    def healthcheck(self, name: str) -> list[str]:
        test = interpolated(SERVICES[name]["healthcheck"]["test"], self.dotenv)
        return [self._here(arg) for arg in healthcheck_argv(test)]

    # -- running it --------------------------------------------------------------------------
    def syncctl(
        self, name: str, *args: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose run --rm NAME ARGS` (or `exec NAME syncctl ARGS`): syncctl with the
        service's environment. Inside the sandbox's container the control API's default port
        base is the compose file's; here it is the free one."""
        env = self.env(name)
        if name == "sandbox":
            command = SERVICES[name]["command"]
            env["SANDBOX_PORT_BASE"] = self.ports[command[command.index("--port-base") + 1]]
        return run([str(self.bin / "syncctl"), *args], self.home, env, timeout)

    def write_connectors_env(self) -> dict[str, str]:
        """README's sandbox trial: `docker compose exec -T sandbox syncctl sandbox env | sed
        's/^export //' > deploy/sandbox.env`, then that file is every service's env_file."""
        printed = self.syncctl("sandbox", "sandbox", "env").stdout
        path = Path(self.dotenv["SYNC_CONNECTORS_ENV"])
        path.write_text(re.sub(r"(?m)^export ", "", printed), "utf-8")
        return read_env_file(path)

    @contextmanager
    def running(self, name: str) -> Iterator[subprocess.Popen[bytes]]:
        log = self.home / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.command(name),
                cwd=self.home,
                env=self.env(name),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield proc
            finally:
                stop(proc)

    def wait_healthy(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Run the healthcheck until it passes, within the time compose gives it."""
        check = SERVICES[name]["healthcheck"]
        budget = seconds(check.get("start_period", "0s")) + check.get("retries", 3) * seconds(
            check.get("interval", "30s")
        )
        last: list[str] = []

        def healthy() -> bool:
            assert proc.poll() is None, f"{name} exited: {self.log_tail(name)}"
            done = subprocess.run(
                self.healthcheck(name),
                cwd=self.home,
                env=self.env(name),
                capture_output=True,
                text=True,
                timeout=seconds(check.get("timeout", "30s")),
                check=False,
            )
            last[:] = [done.stdout, done.stderr]
            return done.returncode == 0

        try:
            wait_for(healthy, budget, interval_s=1, what=f"{name}'s healthcheck")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last}\n{self.log_tail(name)}") from None

    def log_tail(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text("utf-8", "replace")[-3000:]


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """A Redis of this module's own: its workers must not take other test runs' tasks."""
    return private_redis_url


@pytest.fixture
def stack(venv: Path, redis_url: str, database_url: str, tmp_path: Path) -> Stack:
    """Compose's .env points SYNC_CONFIG at a copy of the shipped (sandbox) configuration and
    SYNC_CONNECTORS_ENV at a file for the sandbox's secrets, as the README's trial does."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    home = tmp_path / "home"
    home.mkdir()
    dotenv = DOTENV | {"SYNC_CONFIG": str(config), "SYNC_CONNECTORS_ENV": str(home / "sandbox.env")}
    (home / "sandbox.env").write_text("", "utf-8")
    ports: dict[str, str] = {}
    for service in image_services().values():
        argv = service["command"]
        for flag, value in itertools.pairwise(argv):
            if flag == "--port-base":
                ports[value] = str(free_port_base())
            elif flag == "--port":
                ports[value] = str(free_port())
    return Stack(venv, home, tmp_path / "volumes", dotenv, redis_url, database_url, ports)


def test_given_the_wheel_then_its_python_imports_the_install_not_the_source_tree(
    stack: Stack,
) -> None:
    code = "import sync_pipeline, workers; print(sync_pipeline.__file__); print(workers.__file__)"

    done = run([str(stack.bin / "python"), "-c", code], stack.home, stack.env("worker"))

    for line in done.stdout.split():
        assert Path(line).is_relative_to(stack.bin.parent), line
        assert not Path(line).is_relative_to(ROOT), line


def test_given_the_wheel_then_the_migrate_service_brings_the_schema_to_head(stack: Stack) -> None:
    first = stack.syncctl("migrate", *SERVICES["migrate"]["command"])
    again = stack.syncctl("migrate", *SERVICES["migrate"]["command"])

    assert "schema migrated" in first.stdout
    assert "nothing to do" in again.stdout
    assert current_revision(stack.database_url) == head_revision()


def test_given_the_wheel_then_check_accepts_the_shipped_config(stack: Stack) -> None:
    stack.write_connectors_env()

    done = stack.syncctl("worker", "check")

    assert "configuration OK" in done.stdout


@pytest.mark.parametrize("name", HEALTHY_AS_SHIPPED)
def test_given_the_wheel_then_a_compose_service_answers_its_healthcheck(
    stack: Stack, name: str
) -> None:
    stack.write_connectors_env()
    stack.syncctl("migrate", *SERVICES["migrate"]["command"])  # what they all wait for

    with stack.running(name) as proc:
        stack.wait_healthy(name, proc)


def test_given_the_wheel_and_the_shipped_config_then_events_connect_refuses_in_one_line(
    stack: Stack,
) -> None:
    stack.write_connectors_env()
    stack.syncctl("migrate", *SERVICES["migrate"]["command"])

    done = subprocess.run(
        stack.command("events-connect"),
        cwd=stack.home,
        env=stack.env("events-connect"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    # compose's default SYNC_EVENTS_CONNECTOR names a connector the shipped config lacks
    assert "no connector 'dingtalk'" in done.stderr
    assert "Traceback" not in done.stderr


def test_given_the_wheel_then_beat_queues_the_pulls_of_the_enabled_flows(stack: Stack) -> None:
    stack.write_connectors_env()
    stack.syncctl("migrate", *SERVICES["migrate"]["command"])
    queue = redis.Redis.from_url(stack.redis_url)

    with stack.running("beat"):
        wait_for(lambda: queue.llen("pull") > 0, 90, what="Beat to queue a pull")


def test_given_the_sandbox_profile_then_a_flow_delivers_every_message_once(stack: Stack) -> None:
    """The README's trial: the sandbox up, seeded, its callbacks sent to the webhook service
    (WeCom sends cards only then), its secrets as the services' env_file; then a flow."""
    with stack.running("sandbox") as sandbox:
        stack.wait_healthy("sandbox", sandbox)
        for command in SANDBOX_TRIAL:
            stack.syncctl("sandbox", *command)
        stack.write_connectors_env()
        stack.syncctl("migrate", *SERVICES["migrate"]["command"])  # compose runs it first
        with stack.running("worker"):
            stack.syncctl("worker", "run", FLOW, "--wait", "--timeout", "240", timeout=300)
        printed = stack.syncctl("sandbox", "sandbox", "ledger", "--platform", "wecom", "--json")

    sent = collections.Counter(wecom_sends_in(json.loads(printed.stdout)))
    assert sent == expected_wecom_messages(World(SEED), APPROVALS)
