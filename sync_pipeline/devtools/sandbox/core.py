"""Shared machinery of the sandbox emulators: the store, the ledger, tokens and faults.

The sandbox shares no code with the connectors (an emulator built from our connector code would
agree with our bugs). Each emulator is written from the vendor's documented contract
(../shared/platform-apis.md) and only uses what is here for bookkeeping.

State lives in one SQLite file so that a restart of `syncctl sandbox up` keeps it. Connections
are per thread (Starlette runs sync endpoints in a thread pool); WAL lets readers and the single
writer overlap. The file holds every emulated credential and the control API's admin token, so
it is made readable by its owner only: whoever can read it may drive the sandbox.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    platform   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (platform, kind, id)
);
CREATE INDEX IF NOT EXISTS objects_by_updated ON objects (platform, kind, updated_ms, id);
CREATE INDEX IF NOT EXISTS objects_by_created ON objects (platform, kind, created_ms, id);
CREATE TABLE IF NOT EXISTS ledger (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms    INTEGER NOT NULL,
    platform TEXT    NOT NULL,
    endpoint TEXT    NOT NULL,
    caller   TEXT    NOT NULL,
    idem_key TEXT,
    body     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_key ON ledger (platform, idem_key);
CREATE TABLE IF NOT EXISTS tokens (
    platform   TEXT    NOT NULL,
    token      TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (platform, token)
);
CREATE TABLE IF NOT EXISTS faults (
    platform TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    rate     REAL    NOT NULL,
    until_ms INTEGER,
    params   TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (platform, kind)
);
CREATE TABLE IF NOT EXISTS settings (
    platform TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (platform, key)
);
CREATE TABLE IF NOT EXISTS calls (
    platform TEXT    NOT NULL,
    endpoint TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (platform, endpoint)
);
"""

FAULT_KINDS = (
    "latency",  # params: {"ms": int}; every request waits that long first
    "error5xx",  # a share `rate` of requests gets HTTP 500/503
    "ratelimit",  # a share `rate` of requests gets the vendor's own throttle answer
    "token_expire",  # one-shot: every token issued so far stops working now
    "malformed",  # a share `rate` of JSON answers is not JSON
    "truncated",  # a share `rate` of JSON answers is cut in half
    "duplicate_webhook",  # a share `rate` of callbacks the emulator sends is sent twice
    "out_of_order",  # callbacks are held back at random so that later ones overtake
    "down",  # the platform's port refuses connections until the fault ends
    # A share `rate` of writes is applied (in the ledger) and its answer lost. params:
    # {"how": "drop" (default; the connection closes with no answer) or "late" (the answer
    # comes after `delay_ms`, default LATE_ANSWER_MS: past the client's read timeout),
    # "count": n (only the next n such writes; the fault then ends)}.
    "applied_no_answer",
)
LOST_ANSWER_HOWS = ("drop", "late")
LATE_ANSWER_MS = 30_000  # past every connector's read timeout (config: timeout_s 10)


ADMIN_TOKEN_SETTING = ("sandbox", "admin_token")  # (platform, key) in the settings table
SEED_BATCH = 5000  # rows per insert while seeding: fast, and a million never sit in memory
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def stored_json(body: Any) -> str:
    """An object's JSON as the store keeps it: UTF-8 text, with a lone surrogate (which JSON
    carries as a \\ud800 escape, and a vendor may send) kept escaped, since UTF-8 cannot."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return json.dumps(body, separators=(",", ":"))


def batched(rows: Iterable[Any], size: int = SEED_BATCH) -> Iterator[list[Any]]:
    """Lists of up to `size` rows from any iterable (seeding streams in batches)."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def now_ms() -> int:
    return int(time.time() * 1000)


# The ledger seqs recorded while serving the current request: set by the server's fault layer
# around one request (a context variable reaches the thread pool Starlette runs endpoints in),
# so that it can tell a write that was applied from a call that changed nothing.
_WRITES_SEEN: ContextVar[list[int] | None] = ContextVar("sandbox_writes_seen", default=None)


@contextmanager
def watching_writes() -> Iterator[list[int]]:
    """The ledger seqs of the writes recorded inside the block, in this context."""
    seen: list[int] = []
    token = _WRITES_SEEN.set(seen)
    try:
        yield seen
    finally:
        _WRITES_SEEN.reset(token)


@dataclass(frozen=True)
class LedgerEntry:
    """One write an emulator accepted."""

    seq: int
    ts_ms: int
    platform: str
    endpoint: str
    caller: str
    idem_key: str | None
    body: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "platform": self.platform,
            "endpoint": self.endpoint,
            "caller": self.caller,
            "idem_key": self.idem_key,
            "body": self.body,
        }


@dataclass(frozen=True)
class Fault:
    platform: str
    kind: str
    rate: float
    until_ms: int | None
    params: dict[str, Any]

    def active(self, at_ms: int) -> bool:
        return self.until_ms is None or at_ms < self.until_ms


class TokenState:
    OK = "ok"
    EXPIRED = "expired"
    INVALID = "invalid"


class SandboxStore:
    """The sandbox's own persistent state: emulated objects, ledger, tokens, faults, settings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only before SQLite writes a byte (its -wal and -shm files copy this mode).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._write_lock:  # executescript commits by itself, so no BEGIN around it
            self.conn().executescript(SCHEMA)

    # -- connections -------------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; writers in this process queue on a lock, not on SQLITE_BUSY."""
        conn = self.conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- emulated objects --------------------------------------------------------------------
    def put(
        self,
        platform: str,
        kind: str,
        obj_id: str,
        body: Mapping[str, Any],
        *,
        created_ms: int | None = None,
        updated_ms: int | None = None,
    ) -> None:
        self.put_many(platform, kind, [(obj_id, body, created_ms, updated_ms)])

    def put_many(
        self,
        platform: str,
        kind: str,
        rows: Iterable[tuple[str, Mapping[str, Any], int | None, int | None]],
    ) -> int:
        """Insert or replace objects; `created_ms` is kept from the first insert when None."""
        stamp = now_ms()
        params = [
            (
                platform,
                kind,
                obj_id,
                created if created is not None else stamp,
                updated if updated is not None else (created if created is not None else stamp),
                stored_json(body),
            )
            for obj_id, body, created, updated in rows
        ]
        with self.write() as conn:
            conn.executemany(
                "INSERT INTO objects (platform, kind, id, created_ms, updated_ms, body)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, kind, id) DO UPDATE SET"
                " updated_ms = excluded.updated_ms, body = excluded.body",
                params,
            )
        return len(params)

    def get(self, platform: str, kind: str, obj_id: str) -> dict[str, Any] | None:
        row = (
            self.conn()
            .execute(
                "SELECT body FROM objects WHERE platform = ? AND kind = ? AND id = ?",
                (platform, kind, obj_id),
            )
            .fetchone()
        )
        return None if row is None else dict(json.loads(row[0]))

    def list(
        self,
        platform: str,
        kind: str,
        *,
        time_field: str = "updated_ms",
        from_ms: int | None = None,
        to_ms: int | None = None,
        equals: Mapping[str, Any] | None = None,
        one_of: Mapping[str, Sequence[Any]] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Objects ordered by (time_field, id); `from_ms` inclusive, `to_ms` exclusive.

        `equals` / `one_of` compare top-level JSON fields of the body (json_extract).
        """
        where, args = self._where(platform, kind, time_field, from_ms, to_ms, equals, one_of)
        sql = f"SELECT body FROM objects WHERE {where} ORDER BY {time_field}, id"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [json.loads(r[0]) for r in self.conn().execute(sql, args)]

    def count(
        self,
        platform: str,
        kind: str,
        *,
        time_field: str = "updated_ms",
        from_ms: int | None = None,
        to_ms: int | None = None,
        equals: Mapping[str, Any] | None = None,
        one_of: Mapping[str, Sequence[Any]] | None = None,
    ) -> int:
        where, args = self._where(platform, kind, time_field, from_ms, to_ms, equals, one_of)
        row = self.conn().execute(f"SELECT count(*) FROM objects WHERE {where}", args).fetchone()  # noqa: S608
        return int(row[0])

    @staticmethod
    def _where(
        platform: str,
        kind: str,
        time_field: str,
        from_ms: int | None,
        to_ms: int | None,
        equals: Mapping[str, Any] | None,
        one_of: Mapping[str, Sequence[Any]] | None,
    ) -> tuple[str, builtins.list[Any]]:
        if time_field not in ("updated_ms", "created_ms"):
            raise ValueError(f"time_field must be updated_ms or created_ms, not {time_field!r}")
        clauses = ["platform = ?", "kind = ?"]
        args: builtins.list[Any] = [platform, kind]
        if from_ms is not None:
            clauses.append(f"{time_field} >= ?")
            args.append(from_ms)
        if to_ms is not None:
            clauses.append(f"{time_field} < ?")
            args.append(to_ms)
        for field, value in (equals or {}).items():
            clauses.append("json_extract(body, ?) = ?")
            args += [f"$.{field}", value]
        for field, values in (one_of or {}).items():
            marks = ", ".join("?" for _ in values) or "NULL"
            clauses.append(f"json_extract(body, ?) IN ({marks})")
            args += [f"$.{field}", *values]
        return " AND ".join(clauses), args

    # -- ledger ------------------------------------------------------------------------------
    def record(
        self,
        platform: str,
        endpoint: str,
        caller: str,
        body: Mapping[str, Any],
        idem_key: str | None = None,
    ) -> int:
        """Record one accepted write; returns its ledger sequence number."""
        with self.write() as conn:
            cur = conn.execute(
                "INSERT INTO ledger (ts_ms, platform, endpoint, caller, idem_key, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    now_ms(),
                    platform,
                    endpoint,
                    caller,
                    idem_key,
                    json.dumps(body, ensure_ascii=False),
                ),
            )
            seq = int(cur.lastrowid or 0)
        seen = _WRITES_SEEN.get()
        if seen is not None:
            seen.append(seq)
        return seq

    def find_write(self, platform: str, idem_key: str, window_s: float) -> LedgerEntry | None:
        """The write with this vendor dedupe key inside the vendor's window, if any."""
        row = (
            self.conn()
            .execute(
                "SELECT seq, ts_ms, platform, endpoint, caller, idem_key, body FROM ledger"
                " WHERE platform = ? AND idem_key = ? AND ts_ms >= ? ORDER BY seq LIMIT 1",
                (platform, idem_key, now_ms() - int(window_s * 1000)),
            )
            .fetchone()
        )
        return None if row is None else _ledger_entry(row)

    def ledger(self, platform: str | None = None, since_seq: int = 0) -> builtins.list[LedgerEntry]:
        sql = (
            "SELECT seq, ts_ms, platform, endpoint, caller, idem_key, body FROM ledger"
            " WHERE seq > ?"
        )
        args: builtins.list[Any] = [since_seq]
        if platform:
            sql += " AND platform = ?"
            args.append(platform)
        return [_ledger_entry(r) for r in self.conn().execute(sql + " ORDER BY seq", args)]

    # -- call counters (tests prove "one list call") -----------------------------------------
    def count_call(self, platform: str, endpoint: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO calls (platform, endpoint, count) VALUES (?, ?, 1)"
                " ON CONFLICT (platform, endpoint) DO UPDATE SET count = count + 1",
                (platform, endpoint),
            )

    def calls(self, platform: str | None = None) -> dict[str, int]:
        sql, args = "SELECT platform, endpoint, count FROM calls", []
        if platform:
            sql, args = sql + " WHERE platform = ?", [platform]
        return {f"{p} {e}": int(c) for p, e, c in self.conn().execute(sql, args)}

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self, platform: str, app: str, ttl_s: int, token: str | None = None) -> str:
        token = token or secrets.token_urlsafe(32)
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tokens (platform, token, app, expires_ms)"
                " VALUES (?, ?, ?, ?)",
                (platform, token, app, now_ms() + ttl_s * 1000),
            )
        return token

    def token_state(self, platform: str, token: str | None) -> tuple[str, str | None]:
        """(TokenState, app) of a presented token: a known token past its expiry is EXPIRED."""
        if not token:
            return TokenState.INVALID, None
        row = (
            self.conn()
            .execute(
                "SELECT app, expires_ms FROM tokens WHERE platform = ? AND token = ?",
                (platform, token),
            )
            .fetchone()
        )
        if row is None:
            return TokenState.INVALID, None
        app, expires_ms = row
        return (TokenState.OK if now_ms() < expires_ms else TokenState.EXPIRED), str(app)

    def valid_token_for(self, platform: str, app: str, min_left_s: int = 0) -> str | None:
        """A token of `app` still valid for at least `min_left_s` (vendors that hand it back)."""
        row = (
            self.conn()
            .execute(
                "SELECT token FROM tokens WHERE platform = ? AND app = ? AND expires_ms > ?"
                " ORDER BY expires_ms DESC LIMIT 1",
                (platform, app, now_ms() + min_left_s * 1000),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def expire_tokens(self, platform: str) -> int:
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE tokens SET expires_ms = ? WHERE platform = ? AND expires_ms > ?",
                (now_ms() - 1, platform, now_ms()),
            )
            return cur.rowcount

    # -- faults ------------------------------------------------------------------------------
    def set_fault(
        self,
        platform: str,
        kind: str,
        rate: float = 1.0,
        for_s: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        if kind == "applied_no_answer":
            _check_lost_answer(params or {})
        until = None if for_s is None else now_ms() + int(for_s * 1000)
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO faults (platform, kind, rate, until_ms, params)"
                " VALUES (?, ?, ?, ?, ?)",
                (platform, kind, rate, until, json.dumps(dict(params or {}))),
            )
        return Fault(platform, kind, rate, until, dict(params or {}))

    def spend_fault(self, platform: str, kind: str) -> bool:
        """Whether the fault may strike once more, counting the strike: a fault with a
        `count` param strikes that many times and then ends; one without, until cleared."""
        with self.write() as conn:
            row = conn.execute(
                "SELECT until_ms, params FROM faults WHERE platform = ? AND kind = ?",
                (platform, kind),
            ).fetchone()
            if row is None or (row[0] is not None and now_ms() >= row[0]):
                return False
            params = json.loads(row[1])
            if "count" not in params:
                return True
            left = int(params["count"])
            if left > 1:
                conn.execute(
                    "UPDATE faults SET params = ? WHERE platform = ? AND kind = ?",
                    (json.dumps({**params, "count": left - 1}), platform, kind),
                )
            else:
                conn.execute("DELETE FROM faults WHERE platform = ? AND kind = ?", (platform, kind))
            return left >= 1

    def clear_faults(self, platform: str | None = None, kind: str | None = None) -> int:
        sql = "DELETE FROM faults WHERE 1 = 1"
        args: builtins.list[str] = []
        if platform:
            sql, args = sql + " AND platform = ?", [*args, platform]
        if kind:
            sql, args = sql + " AND kind = ?", [*args, kind]
        with self.write() as conn:
            return conn.execute(sql, args).rowcount

    def faults(self, platform: str | None = None) -> builtins.list[Fault]:
        sql, args = "SELECT platform, kind, rate, until_ms, params FROM faults", []
        if platform:
            sql, args = sql + " WHERE platform = ?", [platform]
        at = now_ms()
        found = [
            Fault(p, k, float(r), u, json.loads(params))
            for p, k, r, u, params in self.conn().execute(sql, args)
        ]
        return [f for f in found if f.active(at)]

    # -- the control API's admin token -------------------------------------------------------
    def admin_token(self) -> str:
        """Generated once per store; the first writer wins (a server and a client may race)."""
        platform, key = ADMIN_TOKEN_SETTING
        with self.write() as conn:
            row = conn.execute(
                "SELECT value FROM settings WHERE platform = ? AND key = ?", (platform, key)
            ).fetchone()
            if row is not None:
                return str(row[0])
            token = secrets.token_urlsafe(24)
            conn.execute(
                "INSERT INTO settings (platform, key, value) VALUES (?, ?, ?)",
                (platform, key, token),
            )
        return token

    # -- settings (callback URLs and the like) -----------------------------------------------
    def set_setting(self, platform: str, key: str, value: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO settings (platform, key, value) VALUES (?, ?, ?)",
                (platform, key, value),
            )

    def setting(self, platform: str, key: str, default: str | None = None) -> str | None:
        row = (
            self.conn()
            .execute("SELECT value FROM settings WHERE platform = ? AND key = ?", (platform, key))
            .fetchone()
        )
        return default if row is None else str(row[0])


def _check_lost_answer(params: Mapping[str, Any]) -> None:
    how = params.get("how", "drop")
    if how not in LOST_ANSWER_HOWS:
        raise ValueError(f"how must be one of {', '.join(LOST_ANSWER_HOWS)}, not {how!r}")
    delay = params.get("delay_ms", LATE_ANSWER_MS)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise ValueError(f"delay_ms must be a number of milliseconds, not {delay!r}")
    count = params.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a whole number of writes from 1, not {count!r}")


def stored_admin_token(path: Path) -> str | None:
    """The admin token of the store at `path`; None when there is no store (or no token) there.
    For clients: unlike SandboxStore(path), it never creates a store."""
    if not path.is_file():
        return None
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        try:
            row = conn.execute(
                "SELECT value FROM settings WHERE platform = ? AND key = ?", ADMIN_TOKEN_SETTING
            ).fetchone()
        except sqlite3.DatabaseError:  # not a sandbox store (yet)
            return None
    return None if row is None else str(row[0])


def _ledger_entry(row: tuple[Any, ...]) -> LedgerEntry:
    seq, ts_ms, platform, endpoint, caller, idem_key, body = row
    return LedgerEntry(int(seq), int(ts_ms), platform, endpoint, caller, idem_key, json.loads(body))


def deliver_callback(
    store: SandboxStore,
    platform: str,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    on_answer: Callable[[int, bytes], None] | None = None,
) -> list[int]:
    """POST one vendor callback to `url`, honouring the duplicate and out-of-order faults.

    Returns the HTTP status of each delivery made now (a held-back delivery is made later from
    a thread, so that a callback sent after it overtakes it). A connection error counts as 0.
    `on_answer(status, body)` sees every answer, held-back ones included: vendors such as
    DingTalk check what the receiver answers, not only its status.
    """
    import random

    import requests  # the sandbox's own HTTP client; it shares nothing with the connectors

    faults = {f.kind: f for f in store.faults(platform)}

    def send() -> int:
        try:
            answer = requests.post(
                url, data=body, headers=dict(headers or {}), params=params, timeout=timeout_s
            )
        except requests.RequestException:
            if on_answer is not None:
                on_answer(0, b"")
            return 0
        if on_answer is not None:
            on_answer(answer.status_code, answer.content)
        return answer.status_code

    copies = 1
    dup = faults.get("duplicate_webhook")
    if dup is not None and random.random() < dup.rate:
        copies = 2
    late = faults.get("out_of_order")
    if late is not None and random.random() < late.rate:
        delay_s = float(late.params.get("delay_ms", 1500)) / 1000.0

        def later() -> None:
            time.sleep(delay_s)
            for _ in range(copies):
                send()

        threading.Thread(target=later, daemon=True).start()
        return []
    return [send() for _ in range(copies)]


class SlidingWindow:
    """In-memory per-key call windows: the vendors' per-(app, API) rate limits.

    A key that goes over its limit stays blocked for one whole window, as WeCom and DingTalk
    block for the window that was exceeded (platform-apis.md §1.3, §2.3). Memory only: a
    restarted sandbox forgets its windows, as a vendor's would after the window passed.
    """

    def __init__(self) -> None:
        self._hits: dict[tuple[str, ...], deque[float]] = {}
        self._blocked_until: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def allow(self, key: tuple[str, ...], limit: int, window_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._blocked_until.get(key, 0.0) > now:
                return False
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) >= limit:
                self._blocked_until[key] = now + window_s
                return False
            hits.append(now)
            return True


def scaled_limit(store: SandboxStore, platform: str, documented: int) -> int | None:
    """The vendor's documented limit times the `rate_limit_scale` setting; None when off.

    A scale of 0 turns limits off (benchmarks); a small scale lets tests hit a limit in a few
    calls. The result is never below one call per window.
    """
    scale = float(store.setting(platform, "rate_limit_scale", "1") or "1")
    if scale <= 0:
        return None
    return max(1, round(documented * scale))
