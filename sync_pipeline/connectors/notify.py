"""Reading a planned notification, shared by the IM connectors.

The planner writes `{"kind", "to", "content"}` (see the `stages` module docstring); each
vendor turns `content` into its own card or message format. What every vendor reads the same
way lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.records import WriteRequest, WriteResult, WriteStatus


def notification(payload: Mapping[str, Any]) -> tuple[str, str | None, Mapping[str, Any]]:
    """(kind, recipient, content) of a planned notification."""
    content = payload.get("content")
    to = payload.get("to")
    return (
        str(payload.get("kind", "")),
        str(to) if to not in (None, "") else None,
        content if isinstance(content, Mapping) else {},
    )


def rejected(request: WriteRequest, reason: str) -> WriteResult:
    """This record cannot be delivered; it becomes a dead letter, the batch goes on."""
    return WriteResult(request.effect_key, WriteStatus.REJECTED, request.target_id, reason)


def plain_text(content: Mapping[str, Any]) -> str:
    """The message as text, with the link appended unless the text already carries it."""
    text = str(content.get("text") or content.get("title") or "")
    url = content.get("url")
    return f"{text}\n{url}" if url and str(url) not in text else text


def clip(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def wants_decision(content: Mapping[str, Any]) -> bool:
    """Approve / Reject buttons: when the content says so, else while it is pending."""
    explicit = content.get("approval")
    return bool(explicit) if explicit is not None else content.get("status") == "pending"
