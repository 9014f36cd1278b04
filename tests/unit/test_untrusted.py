"""Untrusted text made safe to keep: what PostgreSQL and UTF-8 refuse becomes U+FFFD."""

from __future__ import annotations

import json

import psycopg2
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.untrusted import (
    MAX_ID_CHARS,
    REPLACEMENT,
    bounded_id,
    clean_json,
    clean_text,
    excerpt,
    is_clean,
)


def test_given_a_nul_it_becomes_the_replacement_character():
    assert clean_text("a\x00b") == f"a{REPLACEMENT}b"


def test_given_a_lone_surrogate_from_a_json_escape_it_becomes_the_replacement_character():
    lone = json.loads('"x\\ud800y"')
    assert clean_text(lone) == f"x{REPLACEMENT}y"


def test_given_a_surrogate_pair_from_a_json_escape_it_is_kept():
    pair = json.loads('"\\ud83d\\ude00"')
    assert clean_text(pair) == "\U0001f600"


def test_given_clean_json_it_comes_back_as_the_same_object():
    value = {"title": "请假 \u200frtl", "items": [1, 2.5, None, {"k": "v"}]}
    assert clean_json(value) is value


def test_given_dirty_keys_and_values_anywhere_in_json_all_are_cleaned():
    value = {"a\x00": ["ok", {"b": "\x00"}], "n": 1}
    assert clean_json(value) == {f"a{REPLACEMENT}": ["ok", {"b": REPLACEMENT}], "n": 1}


@given(st.text())
def test_given_any_text_the_cleaned_text_is_accepted_by_utf8(text):
    cleaned = clean_text(text)
    assert is_clean(cleaned)
    cleaned.encode("utf-8")
    assert len(cleaned) == len(text)


def test_given_cleaned_text_postgresql_stores_it_in_text_and_jsonb(base_urls):
    value = clean_text(json.loads('"a\\u0000b\\udc00c"'))
    with psycopg2.connect(base_urls[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT %s::text, %s::jsonb", (value, json.dumps({"t": value})))
        text, stored = cur.fetchone()
    assert text == value
    assert stored == {"t": value}


def test_given_a_long_id_it_is_bounded_and_distinct_from_its_neighbours():
    one, two = "e" * 100_000, "e" * 99_999 + "f"
    assert len(bounded_id(one)) == MAX_ID_CHARS
    assert bounded_id(one) != bounded_id(two)
    assert bounded_id("evt-1") == "evt-1"


def test_given_a_long_value_its_excerpt_is_bounded_and_says_how_long_it_was():
    cut = excerpt("L" * 1_000_000)
    assert len(cut) < 300
    assert "1000000 characters" in cut
