"""docker-compose.yml, its env files and the Dockerfile, read as Docker reads them.

There is no Docker engine on our machines, so tests/unit/test_compose.py checks these files
against the code and tests/e2e/test_installed_wheel.py runs each service's command and
healthcheck from the installed wheel; both read them through here: the compose file as YAML with
its merge keys, then compose's interpolation of `${...}` and `$$`; the Dockerfile as its
instructions, stage by stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "sync_pipeline:latest"

# $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME
_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """`${NAME:?message}` with NAME unset: compose refuses the file with `message`."""


def load() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    return compose


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load()["services"]
    return found


def image_services() -> dict[str, dict[str, Any]]:
    """The services that run our image (syncctl is its entrypoint)."""
    return {name: s for name, s in services().items() if s.get("image") == IMAGE}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """One string as compose interpolates it from `env` (the shell and .env)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env and (env[name] != "" or op is None or not op.startswith(":"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _REFERENCE.sub(replace, value)


def interpolated(value: Any, env: Mapping[str, str]) -> Any:
    """Every string inside `value` (lists and mappings too) interpolated."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [interpolated(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolated(item, env) for key, item in value.items()}
    return value


def variables(value: Any) -> set[str]:
    """The names of the variables `value` interpolates (not `$$` escapes)."""
    if isinstance(value, str):
        return {
            m.group("braced") or m.group("bare")
            for m in _REFERENCE.finditer(value)
            if not m.group("escaped")
        }
    if isinstance(value, list):
        return set().union(*(variables(item) for item in value))
    if isinstance(value, dict):
        return set().union(*(variables(item) for item in value.values()))
    return set()


def healthcheck_argv(test: list[str] | str) -> list[str]:
    """What the engine runs in the container for a healthcheck's `test`."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    raise ValueError(f"a healthcheck test starts with CMD or CMD-SHELL, not {kind!r}")


def seconds(duration: str) -> float:
    """A compose duration such as `30s`, `1m30s` or `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a compose duration: {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


_ENV_LINE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>'[^']*'|[^'\"\s#]*)")


def read_env_file(path: Path) -> dict[str, str]:
    """An env file in the subset that compose's env_file, compose's .env and a POSIX shell all
    read alike: comments, blank lines, NAME=value and NAME='value'. Anything else is refused,
    so a file these tests accept means the same to compose."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected NAME=value or NAME='value'")
        values[match["name"]] = match["value"].strip("'")
    return values


@dataclass(frozen=True)
class Instruction:
    stage: int  # which FROM it follows, from 0
    keyword: str  # upper case: FROM, COPY, RUN, ...
    args: str  # continuation lines joined


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, without comments, continuation lines joined."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # Docker drops comments, inside continued instructions too
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions
