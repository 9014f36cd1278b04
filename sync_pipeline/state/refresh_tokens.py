"""Rotating OAuth2 refresh tokens in PostgreSQL: the RefreshTokenStore the runtime hands the
declarative connectors (http/tokens.py says what it promises).

A token is sealed with Fernet under a key derived (HKDF-SHA256) from the connector's client
secret and its name, so the table holds no secret in the clear, and a row copied to another
connector or kept past a change of client secret does not open. A put commits before it
returns: the connector uses the access token that came with it only after.
"""

from __future__ import annotations

import base64

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects.postgresql import insert

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.settings import mask_url
from sync_pipeline.state.db import HINT, _reason, engine_for
from sync_pipeline.state.schema import refresh_tokens


def _fernet(connector: str, seal: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"refresh:{connector}".encode()
    ).derive(seal.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class PostgresRefreshTokenStore:
    """One row per connector in `refresh_tokens`, shared by every process of the database."""

    def __init__(self, database_url: str, connect_timeout_s: float = 3.0) -> None:
        self._engine = engine_for(database_url, connect_timeout_s)
        self._where = mask_url(database_url)

    def get(self, connector: str, seal: str) -> str | None:
        query = sa.select(refresh_tokens.c.sealed).where(refresh_tokens.c.connector == connector)
        try:
            with self._engine.connect() as conn:
                sealed = conn.execute(query).scalar()
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None
        if sealed is None:
            return None
        try:
            return _fernet(connector, seal).decrypt(str(sealed).encode()).decode()
        except InvalidToken:
            return None  # sealed under another client secret: as if none were stored

    def put(self, connector: str, token: str, seal: str) -> None:
        sealed = _fernet(connector, seal).encrypt(token.encode()).decode()
        stmt = insert(refresh_tokens).values(connector=connector, sealed=sealed)
        stmt = stmt.on_conflict_do_update(
            index_elements=[refresh_tokens.c.connector],
            set_={"sealed": sealed, "stored_at": sa.func.now()},
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(stmt)
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None
