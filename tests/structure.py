"""The structure of what an IM connector sent: the body its emulator recorded, text left out.

For each vendor, `STRUCTURES[platform](body, link)` keeps what outside text must never change
(the elements of a card, its buttons and what they do, links, mentions, the kind of message)
and replaces what may hold outside text by a token: a plain-text leaf by TEXT, a markdown
string by the shape a CommonMark reader gives it (tests/rendering.py), a text message by what a
reader could take from it as markup and whether it shows `link`, the address its content gave.
Two bodies made from different text are the same message when their structures are equal.
`UPDATE_STRUCTURES` reads the updates of a card the same way, and `without_id` takes out the
id of the approval a card is about, for comparing cards about different approvals.
Used by the connector conformance test (tests/connectors/test_markup_structure.py) and by the
pipeline's property tests (tests/events/test_property_records.py, test_property_events.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from tests.rendering import shape

TEXT = "<text>"  # a plain-text leaf: nothing in it is read as markup

# (a sent body, the link its content had) -> its structure
Structure = Callable[[Mapping[str, Any], str | None], Any]


def skeleton(node: Any, text_keys: frozenset[str], leaf: Callable[[str], Any]) -> Any:
    """`node` with every string under a key in `text_keys` replaced by `leaf(string)`, and
    every other string, number and key kept: what must not depend on outside text."""
    if isinstance(node, Mapping):
        return {
            key: leaf(value)
            if key in text_keys and isinstance(value, str)
            else skeleton(value, text_keys, leaf)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [skeleton(value, text_keys, leaf) for value in node]
    return node


def plain_leaf(_: str) -> str:
    return TEXT


def markdown_leaf(text: str) -> tuple[str, ...]:
    return tuple(shape(text))


def shows(text: str, link: str | None) -> bool:
    """Whether a text message shows the link it was sent with (connectors/notify.py adds it
    on a line of its own when the text, cut to fit, does not show it already)."""
    return link is not None and link in text


def wecom_text_leaf(text: str, link: str | None) -> tuple[int, bool]:
    """A WeCom text message: how many tags could open in it (WeCom reads `<a>`), and whether
    it shows its link."""
    return len(re.findall(r"<[a-zA-Z/!@]", text)), shows(text, link)


def plain_text_leaf(text: str, link: str | None) -> tuple[str, bool]:
    """A plain message: text, and whether it shows its link."""
    return TEXT, shows(text, link)


# -- per vendor: what of a sent body is structure ------------------------------------------------
def feishu_structure(body: Mapping[str, Any], _: str | None) -> Any:
    content = json.loads(body["content"])
    if body["msg_type"] == "post":
        rows = content["zh_cn"]["content"]
        return (
            "post",
            [[{**e, "text": TEXT} if e["tag"] == "text" else e for e in r] for r in rows],
        )
    return ("card", feishu_card_skeleton(content))


def feishu_card_skeleton(node: Any) -> Any:
    if isinstance(node, Mapping):
        tag, content = node.get("tag"), node.get("content")
        if tag in ("markdown", "lark_md") and isinstance(content, str):
            return {**node, "content": markdown_leaf(content)}
        if tag == "plain_text" and isinstance(content, str):
            return {**node, "content": TEXT}
        return {key: feishu_card_skeleton(value) for key, value in node.items()}
    if isinstance(node, list):
        return [feishu_card_skeleton(value) for value in node]
    return node


def wecom_structure(body: Mapping[str, Any], link: str | None) -> Any:
    if body["msgtype"] == "text":
        return ("text", wecom_text_leaf(body["text"]["content"], link))
    card = {**body["template_card"], "task_id": "<task>"}
    keys = frozenset({"title", "keyname", "value", "sub_title_text"})
    return ("card", skeleton(card, keys, plain_leaf))


def dingtalk_structure(body: Mapping[str, Any], link: str | None) -> Any:
    if "msg" in body:
        return ("text", plain_text_leaf(body["msg"]["text"]["content"], link))
    params = body["cardData"]["cardParamMap"]
    keys = frozenset({"title", "text", "status_label"})
    return ("card", skeleton(params, keys, markdown_leaf))


def agora_structure(body: Mapping[str, Any], link: str | None) -> Any:
    if body["type"] == "txt":
        return ("txt", plain_text_leaf(body["body"]["msg"], link))
    keys = frozenset({"title", "text", "status_label"})
    return ("custom", skeleton(body["body"], keys, plain_leaf))


STRUCTURES: Mapping[str, Structure] = {
    "feishu": feishu_structure,
    "wecom": wecom_structure,
    "dingtalk": dingtalk_structure,
    "agora": agora_structure,
}


# -- per vendor: what of a card update is structure ----------------------------------------------
def feishu_update_structure(body: Mapping[str, Any]) -> Any:
    """A PATCH of an interactive message: the whole card again."""
    return ("card", feishu_card_skeleton(json.loads(body["content"])))


def wecom_update_structure(body: Mapping[str, Any]) -> Any:
    """update_template_card: the button replaced by a label, under a one-use response_code."""
    return skeleton({**body, "response_code": "<code>"}, frozenset({"replace_name"}), plain_leaf)


def dingtalk_update_structure(body: Mapping[str, Any]) -> Any:
    """The card's parameters, by outTrackId."""
    keys = frozenset({"title", "text", "status_label"})
    return skeleton({**body, "outTrackId": "<track>"}, keys, markdown_leaf)


UPDATE_STRUCTURES: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "feishu": feishu_update_structure,
    "wecom": wecom_update_structure,
    "dingtalk": dingtalk_update_structure,
}


def without_id(node: Any, request_id: str, source_id: str, key: Any = None) -> Any:
    """A structure with an approval's id taken out where a card carries it: in the link to
    the OA (`request_id` as the OA has it, which the link must hold percent-encoded: a link
    that reads the id as anything but its value, or that a connector refuses to show, is
    another structure) and in its buttons' keys and values (`source_id`, the id as we keep
    it)."""
    if isinstance(node, Mapping):
        return {k: without_id(v, request_id, source_id, k) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(without_id(v, request_id, source_id, key) for v in node)
    if not isinstance(node, str):
        return node
    if key == "url":
        return node.replace(quote(request_id, safe=""), "{id}")
    if key == "source_id" and node == source_id:
        return "{id}"
    action, colon, rest = node.partition(":")
    if key == "key" and colon and rest == source_id:  # a WeCom button: "approve:<id>"
        return f"{action}:{{id}}"
    return node
