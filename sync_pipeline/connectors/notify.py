"""Reading a planned notification or approval-center instance, shared by the connectors.

The planner writes a `records.Notification` (kind, to, content); each vendor turns its
`content` into its own card, message or approval-center instance. What every
vendor reads the same way lives here once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sync_pipeline.connectors.markup import Markup, Unit, link, measure
from sync_pipeline.records import WriteRequest, WriteResult, WriteStatus


def rejected(request: WriteRequest, reason: str) -> WriteResult:
    """This record cannot be delivered; it becomes a dead letter, the batch goes on."""
    return WriteResult(request.effect_key, WriteStatus.REJECTED, request.target_id, reason)


INSTANCE_FIELDS = ("status", "applicant", "created_at", "url")  # what every instance needs


def approval_instance(
    request: WriteRequest, what: str, statuses: Collection[str]
) -> tuple[Mapping[str, Any], str]:
    """(content, problem) of a planned approval-center instance: the problem is "" unless the
    mapping left out a field every instance needs or gave a status not in `statuses`; `what`
    names the instance in it."""
    content = request.notification.content
    absent = [name for name in INSTANCE_FIELDS if content.get(name) in (None, "")]
    if absent:
        return content, f"{what} needs {', '.join(absent)} in the mapping"
    if str(content["status"]) not in statuses:
        return content, f"unknown approval status {content['status']!r}"
    return content, ""


def pending_approvers(content: Mapping[str, Any]) -> list[str]:
    """Who must act on an approval now: its approvers, once each, while it is pending."""
    if str(content["status"]) != "pending":
        return []
    value = content.get("approvers")
    values = value if isinstance(value, list | tuple) else [value]
    return list(dict.fromkeys(str(v) for v in values if v not in (None, "")))


def plain_message(
    content: Mapping[str, Any], markup: Markup, limit: int, unit: Unit = Unit.BYTES
) -> tuple[str, str | None]:
    """(text, link) of a message: its text (or title) in `markup`, cut to fit, and the link
    to show after it on a line of its own, None when there is none or the text shows it
    already. Text, a newline and the link together stay within `limit`."""
    text = content.get("text") or content.get("title") or ""
    url = link(content.get("url"))
    whole = markup.fit(text, limit, unit)
    if url is None or url in whole:
        return whole, None
    return markup.fit(text, limit - measure(f"\n{url}", unit), unit), url


def message_text(content: Mapping[str, Any], markup: Markup, limit: int) -> str:
    """The message as one text: `plain_message`'s text, and its link on a line of its own."""
    text, url = plain_message(content, markup, limit)
    return text if url is None else f"{text}\n{url}"


def wants_decision(content: Mapping[str, Any]) -> bool:
    """Approve / Reject buttons: when the content says so, else while it is pending."""
    explicit = content.get("approval")
    return bool(explicit) if explicit is not None else content.get("status") == "pending"
