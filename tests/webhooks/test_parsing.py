"""Parsing what a vendor sent, bounded before it starts: JSON (delivery.json_value) and WeCom's
XML (wecom.xml_fields) refuse what nests too deep, and what is not JSON or carries a DTD, as a
malformed delivery; what they accept is cleaned of what PostgreSQL refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipeline.errors import Reason, Refused
from sync_pipeline.webhooks.delivery import MAX_DEPTH, json_value, nested_within_max_depth
from sync_pipeline.webhooks.wecom import MAX_XML_ELEMENTS, xml_fields


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return [value] if depth else value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def refused(parse, text) -> Reason:
    with pytest.raises(Refused) as caught:
        parse(text)
    return caught.value.reason


def test_given_json_nested_as_deep_as_allowed_it_is_parsed() -> None:
    assert json_value(json.dumps(nested_list(MAX_DEPTH))) == nested_list(MAX_DEPTH)


def test_given_json_nested_one_deeper_it_is_malformed() -> None:
    assert refused(json_value, json.dumps(nested_list(MAX_DEPTH + 1))) is Reason.MALFORMED


def test_given_brackets_inside_strings_they_do_not_count_as_nesting() -> None:
    text = json.dumps({"a": "[" * 1000 + '\\"{' * 1000})

    assert json_value(text) == json.loads(text)


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_given_nan_or_infinity_it_is_malformed(text: str) -> None:
    assert refused(json_value, text) is Reason.MALFORMED


@pytest.mark.parametrize("body", [b"\xff{}", b'{"a": "\\u00"}', b"", b"[" * 100_000])
def test_given_what_is_not_json_it_is_malformed(body: bytes) -> None:
    assert refused(json_value, body) is Reason.MALFORMED


def test_given_nul_and_lone_surrogates_they_become_replacement_characters() -> None:
    assert json_value(b'{"a\\u0000": ["\\ud800x"]}') == {"a\ufffd": ["\ufffdx"]}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.sampled_from('[]{}"\\ ,:ab')),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(st.sampled_from('[]{}"\\ab'), max_size=4), inner, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON, wrappers=st.integers(MAX_DEPTH - 4, MAX_DEPTH + 1))
def test_the_depth_check_agrees_with_the_depth_of_what_json_parses(
    value: Any, wrappers: int
) -> None:
    for _ in range(wrappers):
        value = [value]

    assert nested_within_max_depth(json.dumps(value)) == (depth_of(value) <= MAX_DEPTH)


# -- WeCom's XML ---------------------------------------------------------------------------------
def nested_xml(depth: int) -> str:
    return "<xml>" + "<a>" * depth + "x" + "</a>" * depth + "</xml>"


def test_given_xml_nested_as_deep_as_allowed_it_is_read() -> None:
    fields = xml_fields(nested_xml(MAX_DEPTH - 1))

    for _ in range(MAX_DEPTH - 2):
        fields = fields["a"]
    assert fields == {"a": "x"}


def test_given_xml_nested_one_deeper_it_is_malformed() -> None:
    assert refused(xml_fields, nested_xml(MAX_DEPTH)) is Reason.MALFORMED


def test_given_xml_with_more_elements_than_a_callback_has_it_is_malformed() -> None:
    wide = "<xml>" + "<a/>" * MAX_XML_ELEMENTS + "</xml>"

    assert refused(xml_fields, wide) is Reason.MALFORMED


@pytest.mark.parametrize(
    "xml",
    [
        '<!DOCTYPE xml [<!ENTITY a "b">]><xml><A>&a;</A></xml>',
        '<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml/>',
        "<xml><A>unclosed</xml>",
        "not xml",
    ],
)
def test_given_a_dtd_or_what_is_not_xml_it_is_malformed(xml: str) -> None:
    assert refused(xml_fields, xml) is Reason.MALFORMED


def test_given_repeated_tags_they_are_read_as_a_list() -> None:
    assert xml_fields("<xml><A>1</A><A>2</A><B><C>3</C></B></xml>") == {
        "A": ["1", "2"],
        "B": {"C": "3"},
    }
