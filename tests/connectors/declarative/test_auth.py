"""Each auth type of the declarative connector against the test API: static keys, bearer,
basic, OAuth2 client credentials, rotating refresh tokens (kept in PostgreSQL before use, so a
crash never strands the connector), a login endpoint (and a token of its per acting user, for
decisions), HMAC-signed requests."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

from sync_pipeline.connectors.base import ConnectorContext, Decision
from sync_pipeline.errors import VendorRejected
from sync_pipeline.records import ReadWindow
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.refresh_tokens import PostgresRefreshTokenStore
from tests.connectors.declarative.conftest import Make, TestAPI

EVERYTHING = ReadWindow(None, None)
OAUTH = {
    "client_id": "{{ credentials.client_id }}",
    "client_secret": "{{ credentials.client_secret }}",
    "token_url": "oauth/token",
}
OAUTH_CREDENTIALS = {"client_id": "T_CLIENT_ID", "client_secret": "T_CLIENT_SECRET"}


def items(path: str, auth: dict[str, Any], **read: Any) -> dict[str, Any]:
    return {
        "auth": auth,
        "streams": {
            "items": {"id": "$.id", "read": {"path": path, "records": "$.items[*]", **read}}
        },
    }


def ids(connector: Any) -> list[str]:
    return [r.source_id for r in connector.read_page("items", EVERYTHING, None, 10).records]


def test_a_static_bearer_token_is_sent(rest: Make) -> None:
    connector = rest(
        items("bearer/items", {"type": "bearer", "token": "{{ credentials.key }}"}),
        {"key": "T_API_KEY"},
    )

    assert ids(connector) == ["i000", "i001", "i002"]


def test_basic_auth_is_sent(rest: Make) -> None:
    connector = rest(
        items(
            "basic/items",
            {
                "type": "basic",
                "username": "{{ credentials.user }}",
                "password": "{{ credentials.password }}",
            },
        ),
        {"user": "T_USER", "password": "T_PASSWORD"},
    )

    assert len(ids(connector)) == 3


def test_client_credentials_fetch_one_token_shared_by_every_call(rest: Make, api: TestAPI) -> None:
    connector = rest(
        items("bearer/items", {"type": "oauth2_client_credentials", **OAUTH}), OAUTH_CREDENTIALS
    )

    ids(connector)
    ids(connector)

    assert api.token_calls == 1


def test_a_login_endpoint_gives_the_token_and_its_lifetime(rest: Make, api: TestAPI) -> None:
    connector = rest(
        items(
            "bearer/items",
            {
                "type": "login",
                "token_url": "login",
                "body_format": "json",
                "body": {
                    "user": "{{ credentials.user }}",
                    "password": "{{ credentials.password }}",
                },
                "token_path": "$.result.session",
                "expires_in_path": "$.result.ttl",
            },
        ),
        {"user": "T_USER", "password": "T_PASSWORD"},
    )

    assert len(ids(connector)) == 3


def test_requests_are_signed_with_hmac_over_method_path_timestamp_and_body(rest: Make) -> None:
    connector = rest(
        items(
            "signed/items",
            {
                "type": "hmac",
                "key": "{{ credentials.hmac }}",
                "header": "X-Signature",
                "timestamp_header": "X-Timestamp",
                "message": "{{ method }}\n{{ path }}\n{{ timestamp }}\n{{ body }}",
            },
            method="POST",
            json={"q": "all"},
        ),
        {"hmac": "T_HMAC"},
    )

    assert len(ids(connector)) == 3


@pytest.fixture
def refresh_store(database_url: str) -> PostgresRefreshTokenStore:
    migrate(database_url)
    return PostgresRefreshTokenStore(database_url)


def refreshing(rest: Make, ctx: ConnectorContext, store: Any) -> Any:
    context = ConnectorContext(ctx.redis, None, ctx.session, store)
    return rest(
        items(
            "bearer/items",
            {"type": "oauth2_refresh_token", **OAUTH, "refresh_token": "{{ credentials.refresh }}"},
        ),
        {**OAUTH_CREDENTIALS, "refresh": "T_REFRESH"},
        context,
    )


class Crash(BaseException):
    """The process dies here."""


class CrashAfterStoring(PostgresRefreshTokenStore):
    """The real store; the process dies right after a rotated token is committed, before the
    access token that came with it is cached or used."""

    def put(self, connector: str, token: str, seal: str) -> None:
        super().put(connector, token, seal)
        raise Crash


def test_a_rotated_refresh_token_survives_a_crash_right_after_it_arrived(
    rest: Make,
    ctx: ConnectorContext,
    api: TestAPI,
    refresh_store: PostgresRefreshTokenStore,
    database_url: str,
) -> None:
    with pytest.raises(Crash):
        ids(refreshing(rest, ctx, CrashAfterStoring(database_url)))
    assert api.refresh_token == "r-1"  # the provider rotated it: the configured r-0 is dead

    after_restart = refreshing(rest, ctx, refresh_store)

    assert len(ids(after_restart)) == 3
    assert api.refresh_token == "r-2"
    assert refresh_store.get("test_api", "s3cret") == "r-2"


def test_the_refresh_token_is_stored_sealed_never_in_the_clear(
    rest: Make,
    ctx: ConnectorContext,
    refresh_store: PostgresRefreshTokenStore,
    database_url: str,
) -> None:
    ids(refreshing(rest, ctx, refresh_store))

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT sealed FROM refresh_tokens")
        [(sealed,)] = cur.fetchall()
    assert "r-1" not in sealed


def test_a_connector_with_rotating_refresh_tokens_and_no_store_is_refused(
    rest: Make, ctx: ConnectorContext
) -> None:
    from sync_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="refresh token store"):
        refreshing(rest, ctx, None)


# -- a token per acting user (login with as_user) ---------------------------------------------
LOGIN = {
    "type": "login",
    "token_url": "login",
    "body_format": "json",
    "body": {"user": "{{ credentials.user }}", "password": "{{ credentials.password }}"},
    "token_path": "$.result.session",
    "expires_in_path": "$.result.ttl",
}
LOGIN_CREDENTIALS = {"user": "T_USER", "password": "T_PASSWORD"}


def deciding(rest: Make, **auth: Any) -> Any:
    """A connector whose `items` stream decides as the approver: POST requests/ID/VERDICT."""
    verdict = {
        "method": "POST",
        "path": "requests/{{ source_id }}/{{ decision }}",
        "json": {"comment": "{{ comment }}"},
        "ok_path": "$.code",
        "ok_equals": [0],
        "message_path": "$.msg",
    }
    stream = {
        "id": "$.id",
        "read": {"path": "bearer/items", "records": "$.items[*]"},
        "read_one": {"path": "requests/{{ source_id }}", "record": "$"},
        "decide": {"approve": verdict, "reject": verdict},
    }
    return rest({"auth": {**LOGIN, **auth}, "streams": {"items": stream}}, LOGIN_CREDENTIALS)


def test_a_decision_is_made_with_a_token_bound_to_the_deciding_user(
    rest: Make, api: TestAPI
) -> None:
    connector = deciding(rest, as_user={"as": "{{ as_user }}"})

    connector.decide("items", "r1", Decision.APPROVE, "ann", "fine")
    connector.decide("items", "r2", Decision.REJECT, "bob", "no")

    assert api.decisions == [("r1", "approve", "ann"), ("r2", "reject", "bob")]


def test_each_users_token_is_fetched_once_and_reused(rest: Make, api: TestAPI) -> None:
    connector = deciding(rest, as_user={"as": "{{ as_user }}"})
    ids(connector)  # the connector's own token, bound to no one

    for request_id in ("r1", "r2", "r3"):
        connector.decide("items", request_id, Decision.APPROVE, "ann", "")

    assert api.token_calls == 2  # the connector's and ann's
    assert len(api.decisions) == 3


def test_a_user_the_token_endpoint_refuses_is_that_decisions_refusal_not_the_connectors(
    rest: Make, api: TestAPI
) -> None:
    connector = deciding(rest, as_user={"as": "{{ as_user }}"})

    with pytest.raises(VendorRejected, match="refused this user"):
        connector.decide("items", "r1", Decision.APPROVE, "mallory", "")

    assert ids(connector) == ["i000", "i001", "i002"]  # the connector still reads
    assert api.decisions == []


def test_without_as_user_a_decision_uses_the_connectors_own_token(rest: Make, api: TestAPI) -> None:
    connector = deciding(rest)

    with pytest.raises(VendorRejected, match="bound to no user"):
        connector.decide("items", "r1", Decision.APPROVE, "ann", "")
