"""What the operator is told about a failure: what broke and which record, never SQL, bound
parameters or payload excerpts (issue 9, point 9)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.errors import RecordError, VendorUnavailable
from sync_pipeline.failures import describe
from sync_pipeline.state.db import engine_for

SECRET = "salary-of-105"  # stands for a payload value


def refused(database_url: str, statement: str, **params: str) -> sa.exc.DBAPIError:
    """The error PostgreSQL answers `statement` with."""
    with pytest.raises(sa.exc.DBAPIError) as caught, engine_for(database_url).connect() as conn:
        conn.execute(sa.text(statement), params)
    return caught.value


@pytest.mark.parametrize(
    ("statement", "condition"),
    [
        ("SELECT CAST(:v AS jsonb)", "untranslatable character"),
        ("SELECT CAST(:v AS integer)", "invalid text representation"),
        ("SELECT * FROM no_such_table WHERE x = :v", "undefined table"),
    ],
)
def test_given_a_statement_postgresql_refuses_then_the_description_names_the_condition_only(
    database_url: str, statement: str, condition: str
) -> None:
    error = refused(database_url, statement, v=f'{{"title": "{SECRET} \\u0000"}}')

    text = describe(error)

    assert text.startswith(f"PostgreSQL refused a statement: {condition}")
    assert SECRET not in text
    assert "SELECT" not in text


def test_given_an_error_raised_while_handling_a_database_error_then_the_sql_stays_out(
    database_url: str,
) -> None:
    cause = refused(database_url, "SELECT CAST(:v AS integer)", v=SECRET)
    error = RuntimeError(str(cause))
    error.__cause__ = cause  # as `raise RuntimeError(...) from cause` leaves it

    text = describe(error)

    assert text.startswith("PostgreSQL refused a statement: invalid text representation")


def test_given_a_record_error_then_the_description_names_the_record() -> None:
    assert describe(RecordError("R7", "no wecom user for OA user 105")) == (
        "record R7: no wecom user for OA user 105"
    )


def test_given_a_vendor_error_then_the_description_is_its_own_line() -> None:
    assert describe(VendorUnavailable("dingtalk", "connect_error", "im/send")) == (
        "dingtalk connect_error: im/send"
    )


def test_given_an_unexpected_error_then_the_description_is_one_bounded_line() -> None:
    text = describe(ValueError("first line\n" + "x" * 10_000))

    assert text.startswith("unexpected ValueError: first line")
    assert "\n" not in text
    assert len(text) < 400
