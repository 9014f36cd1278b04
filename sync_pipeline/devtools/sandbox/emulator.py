"""The seam between the sandbox server and one emulated platform.

An emulator owns its vendor's paths, parameters, field names, error codes and crypto, written
from the vendor's documented contract. It keeps its objects in the `SandboxStore` under its own
`platform` name, records every accepted write in the ledger, and counts every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.responses import Response
from starlette.routing import BaseRoute

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.world import World


class PressError(Exception):
    """A simulated-user action that cannot be carried out (unknown card, no callback URL...)."""


class Emulator(ABC):
    """One vendor's HTTP contract. Subclasses are plain Starlette route tables."""

    platform: ClassVar[str]  # "oa", "wecom", "dingtalk", "feishu", "agora", "seeyon"
    title: ClassVar[str]  # shown by `syncctl sandbox up`
    port_offset: ClassVar[int]  # its port is --port-base + port_offset

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        self.store = store
        self.base_url = base_url

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The vendor's endpoints, at the vendor's own paths."""

    @abstractmethod
    def credentials(self) -> dict[str, str]:
        """What a client needs to log in (app id, secret, callback token, AES key...).

        Deterministic for a given store: generated once and kept in the store's settings.
        """

    @abstractmethod
    def throttle_response(self) -> Response:
        """The vendor's own rate-limit answer (error code, HTTP status and headers)."""

    @abstractmethod
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """Create this platform's view of `world`; returns counts per kind for the summary."""

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a user (press a card button, post a message) and send the vendor's callback.

        Emulators without interactive callbacks keep this default.
        """
        raise PressError(f"{self.platform} has no simulated user actions")
