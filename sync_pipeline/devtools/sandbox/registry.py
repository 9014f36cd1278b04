"""Which emulators the sandbox serves, and on which port offset.

Emulator modules are imported by name so that the server runs with whichever platforms exist
in this build: a module that is *absent* is skipped and logged, while a module that is present
but broken (a syntax error, a missing class, a wrong port offset) is an error, never a silently
missing platform.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import random
import socket
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline.devtools.sandbox.emulator import Emulator

log = logging.getLogger(__name__)

DEFAULT_PORT_BASE = 18600
CONTROL_PORT_OFFSET = 0

# platform -> (module:Class, port offset); the offsets are part of the documented contract.
EMULATORS: dict[str, tuple[str, int]] = {
    "oa": ("sync_pipeline.devtools.sandbox.oa:OAEmulator", 1),
    "wecom": ("sync_pipeline.devtools.sandbox.wecom:WeComEmulator", 2),
    "dingtalk": ("sync_pipeline.devtools.sandbox.dingtalk:DingTalkEmulator", 3),
    "feishu": ("sync_pipeline.devtools.sandbox.feishu:FeishuEmulator", 4),
    "agora": ("sync_pipeline.devtools.sandbox.agora:AgoraEmulator", 5),
    "seeyon": ("sync_pipeline.devtools.sandbox.seeyon:SeeyonEmulator", 6),
    "slack": ("sync_pipeline.devtools.sandbox.slack:SlackEmulator", 7),
}


class RegistryError(Exception):
    """An emulator module exists but cannot be used as registered."""


@dataclass(frozen=True)
class Registry:
    classes: dict[str, type[Emulator]]  # in EMULATORS order
    missing: tuple[str, ...]  # platforms whose module is not in this build


def load_registry() -> Registry:
    """Import every registered emulator whose module exists."""
    classes: dict[str, type[Emulator]] = {}
    missing: list[str] = []
    for platform, (target, offset) in EMULATORS.items():
        module_name, class_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the module exists but one of *its* imports is missing: a real error
            missing.append(platform)
            continue
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Emulator)):
            raise RegistryError(f"{module_name} has no Emulator subclass named {class_name}")
        if cls.platform != platform or cls.port_offset != offset:
            raise RegistryError(
                f"{target} declares platform {cls.platform!r} on port offset {cls.port_offset};"
                f" the sandbox expects {platform!r} on offset {offset}"
            )
        classes[platform] = cls
    if missing:
        log.info("sandbox emulators not in this build: %s", ", ".join(missing))
    return Registry(classes, tuple(missing))


def _listening_range() -> tuple[int, int]:
    """Port bases below the kernel's ephemeral range: there, an outgoing connection of any
    process can take a port between our choice and our bind (seen under load in the suite)."""
    ephemeral_low = 32_768
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    high = ephemeral_low - 10 * (1 + max(offset for _, offset in EMULATORS.values()))
    return (10_000, high) if high > 11_000 else (20_000, 60_000)


def port_for(platform: str, port_base: int) -> int:
    if platform == "control":
        return port_base + CONTROL_PORT_OFFSET
    return port_base + EMULATORS[platform][1]


def free_port_base(attempts: int = 50) -> int:
    """A base whose control port and every emulator port are free on loopback."""
    offsets = [CONTROL_PORT_OFFSET, *(offset for _, offset in EMULATORS.values())]
    low, high = _listening_range()
    for _ in range(attempts):
        base = random.randrange(low, high, 10)
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports for the sandbox")
