"""A vendor stuck on one page, in front of an emulator: what a pull must stop rather than
follow forever (records.PageTrail and the connectors' own checks of the vendor's tokens)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StuckOn:
    """Every call of `path` after the first gets the first's answer, whatever page it asks
    for, and so the same next-page token again. Other paths are answered as `app` answers."""

    def __init__(self, path: str, app: ASGIApp) -> None:
        self.path, self.app = path, app
        self.first: list[Message] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.first is not None:
            for message in self.first:
                await send(message)
            return
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        self.first = answer
