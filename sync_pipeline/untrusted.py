"""Text from outside (source records, webhook bodies, vendor answers) made safe to keep.

What we store, decided once (issue 9): PostgreSQL refuses U+0000 in `text` and `jsonb`, and
UTF-8 cannot carry a lone surrogate (U+D800-U+DFFF without its pair, which JSON's `\\ud800`
escape can produce). We do not keep such payloads byte-exact: each such code point becomes
U+FFFD (the replacement character, as a UTF-8 decoder does with bytes it cannot read), at the
edge where the text enters, so the content hash, the id map, the dead letter and the message
sent to the IM all see the same value. Everything else is kept exactly as the vendor sent it,
but for one thing JSON itself cannot carry: a NaN or infinite number (which Python's JSON
reader accepts and jsonb refuses) becomes null, as JavaScript's JSON.stringify makes it.

Lengths are bounded where an untrusted value becomes a key or a log line: an id longer than
MAX_ID_CHARS is kept as a prefix and a digest of the whole (distinct ids stay distinct), and a
log excerpt is cut to a few hundred characters.

Every function here is linear in the length of its input.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

REPLACEMENT = "\ufffd"
_REFUSED = re.compile("[\x00\ud800-\udfff]")
MAX_ID_CHARS = 200  # vendor event ids and record ids are tens of characters
LOG_EXCERPT_CHARS = 200


def clean_text(text: str) -> str:
    """`text` with every code point PostgreSQL or UTF-8 refuses replaced by U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    return _REFUSED.sub(REPLACEMENT, text)


def is_clean(text: str) -> bool:
    return _REFUSED.search(text) is None


def clean_json(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string cleaned, keys
    included, and NaN or infinite numbers as None. Values that are already clean come back as
    they are (no copy)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        items = [(clean_text(str(k)), clean_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        cleaned = [clean_json(v) for v in value]
        if all(a is b for a, b in zip(cleaned, value, strict=True)):
            return value
        return cleaned
    return value


def bounded_id(value: str, limit: int = MAX_ID_CHARS) -> str:
    """An id safe to key on: cleaned, and past `limit` characters a prefix plus a digest of
    the whole value, so two long ids that differ anywhere stay different."""
    text = clean_text(value)
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{text[: limit - 33]}~{digest}"


def excerpt(value: str, limit: int = LOG_EXCERPT_CHARS) -> str:
    """A bounded, cleaned excerpt of an untrusted value for a log line or an error."""
    text = clean_text(value[: limit + 1])
    if len(value) <= limit:
        return text
    return f"{text[:limit]}... ({len(value)} characters)"
