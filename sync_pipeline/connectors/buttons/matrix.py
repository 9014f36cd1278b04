"""Matrix has no buttons: an approver decides by reacting to our card (an `m.reaction`
annotation, ✅ or ❌) or by replying to it with "approve" or "reject" (and a comment after).
Our card carries its source id in its content (`SOURCE_ID_KEY`), which a reaction or reply
names by the card's event id; `parse_*` turn what the person did into a decision, None for
anything else (another emoji, a reply that says something else)."""

from __future__ import annotations

from sync_pipeline.connectors.base import Decision

SOURCE_ID_KEY = "org.sync_pipeline.source_id"  # in the content of every card we send
APPROVE_KEYS = frozenset({"✅", "✅️", "👍", "👍️"})
REJECT_KEYS = frozenset({"❌", "❌️", "👎", "👎️"})
WORDS = {"approve": Decision.APPROVE, "reject": Decision.REJECT}
HOW_TO = "React ✅ to approve or ❌ to reject, or reply “approve” or “reject” (and a comment)."


def parse_reaction(key: object) -> Decision | None:
    """The decision an annotation's key stands for."""
    if key in APPROVE_KEYS:
        return Decision.APPROVE
    if key in REJECT_KEYS:
        return Decision.REJECT
    return None


def parse_reply(body: object) -> tuple[Decision, str] | None:
    """(decision, comment) of a reply's text: its first word, once the quoted fallback that
    older clients put first ("> <@bot:hs> ...") is dropped; None for any other text."""
    if not isinstance(body, str):
        return None
    lines = [line for line in body.splitlines() if not line.startswith(">")]
    text = " ".join(line.strip() for line in lines if line.strip())
    word, _, comment = text.partition(" ")
    decision = WORDS.get(word.strip(".,:;!").lower())
    return None if decision is None else (decision, comment.strip())
