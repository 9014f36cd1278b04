"""What the operator is told about a failure, and whether it is one record's or the run's.

`describe` is the one way an exception becomes the text of a run's error (`runs.error`, which
`syncctl run --wait` and `syncctl status` print), an event's error and a dead letter's reason.
It says what broke and, where the error knows it, which record: never SQL, bound parameters or
an excerpt of a payload, which SQLAlchemy and PostgreSQL put in their messages (the statement,
"Failing row contains (...)", "JSON data, line 1: ..."). The payload of a record that failed is
kept in the dead-letter table only.

`about_record` tells an error about one record (its content, its recipient: dead-letter it and
go on) from an error about the run (a server, a quota, the config: stop or retry, whatever
record was being handled). Our own errors say it by class (`SyncError.about_record`); anything
else is taken to be about the record, except the errors of the servers we depend on.
"""

from __future__ import annotations

import psycopg2
import redis
import sqlalchemy as sa
from psycopg2 import errorcodes

from sync_pipeline.errors import SyncError
from sync_pipeline.untrusted import bounded_id, excerpt

MAX_CHARS = 300  # one line an operator reads; the logs hold the traceback


def describe(error: BaseException) -> str:
    """One bounded line saying what broke, naming the record when the error knows it."""
    database = _database_error(error)
    if database is not None:
        text = _describe_database(database)
    elif isinstance(error, SyncError):
        text = _first_line(str(error)) or type(error).__name__
    else:
        first = _first_line(str(error))
        text = f"unexpected {type(error).__name__}" + (f": {first}" if first else "")
    record_id = getattr(error, "record_id", None)
    if isinstance(record_id, str) and f"record {record_id}" not in text:
        text = f"record {bounded_id(record_id)}: {text}"
    return excerpt(text, MAX_CHARS)


def about_record(error: BaseException) -> bool:
    """Whether `error` is about the record being handled rather than about the run."""
    if isinstance(error, SyncError):
        return error.about_record
    servers = sa.exc.SQLAlchemyError | psycopg2.Error | redis.exceptions.RedisError | OSError
    return not isinstance(error, servers)


def undefined_table(error: BaseException) -> bool:
    """Whether PostgreSQL said a table does not exist: the schema was never migrated, or is
    older than the code (`syncctl migrate` brings it up to date)."""
    database = _database_error(error)
    driver = database.orig if isinstance(database, sa.exc.StatementError) else database
    return isinstance(driver, psycopg2.Error) and driver.pgcode == errorcodes.UNDEFINED_TABLE


def _database_error(error: BaseException) -> BaseException | None:
    """The SQLAlchemy or driver error in `error`'s chain (an error raised while handling one,
    or from one), if any: its message holds the statement and its parameters."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, sa.exc.StatementError | psycopg2.Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe_database(error: BaseException) -> str:
    """PostgreSQL's own condition name and what it is about (table, column, constraint), and
    never its message: the message and its DETAIL and CONTEXT lines quote the values."""
    driver = error.orig if isinstance(error, sa.exc.StatementError) else error
    if not isinstance(driver, psycopg2.Error):
        return f"a statement could not be run ({type(driver).__name__})"
    if driver.pgcode is None:  # no answer from the server: a connection that failed or broke
        return f"PostgreSQL could not be reached or the connection broke ({type(driver).__name__})"
    condition = (errorcodes.lookup(driver.pgcode) or driver.pgcode).lower().replace("_", " ")
    diag = driver.diag
    about = [
        f"{what} {name}"
        for what, name in (
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
        )
        if name
    ]
    where = f" on {', '.join(about)}" if about else ""
    return (
        f"PostgreSQL refused a statement: {condition}{where}"
        f" ({type(driver).__name__}, SQLSTATE {driver.pgcode})"
    )


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()
