"""The declarative connector's authenticators: where credentials go on each request.

Static ones (api_key, bearer, basic) add the same headers or query every time. Token ones
(oauth2_client_credentials, oauth2_refresh_token, login, ecology) fetch a token through the
shared `TokenCache` (Redis, one fetch for every worker) and place it as `use:` says. hmac signs
each request. A rotating refresh token is put in the runtime's `RefreshTokenStore` (PostgreSQL)
the moment it arrives, before the access token that came with it is used, so a crash after the
provider rotated it never strands the connector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.declarative import AuthSpec, AuthType, Placement, TokenUse, jsonpath
from sync_pipeline.errors import ConfigError, TokenExpired, VendorRejected, VendorUnavailable
from sync_pipeline.http import AuthParts, HttpClient, RefreshTokenStore, TokenCache

log = logging.getLogger(__name__)

TOKEN_REFRESH_MARGIN_S = 60.0
ACCESS_TOKEN = jsonpath("$.access_token")
REFRESH_TOKEN = jsonpath("$.refresh_token")
EXPIRES_IN = jsonpath("$.expires_in")
ECOLOGY_APPLYTOKEN = "api/ec/dev/auth/applytoken"
ECOLOGY_CREDENTIALS = ("appid", "secret", "spk")
ACTING_TOKENS_KEPT = 256  # per-user token caches one process keeps (the tokens live in Redis)


@dataclass
class Signed:
    """What one request needs to be sent to carry this connector's auth."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class Authenticator:
    """One connector's auth: `tokens` (None: no token), `place` (puts a token on a request),
    `static` (added to every request) and `sign` (per request, hmac)."""

    def __init__(
        self,
        config: ConnectorConfig,
        spec: AuthSpec,
        context: Mapping[str, Any],
        store: RefreshTokenStore | None,
        redis_client: Any,
    ) -> None:
        self.config, self.spec, self._context = config, spec, context
        self._store = store
        self.tokens: TokenCache | None = None
        self.static = Signed()
        self._client: HttpClient | None = None
        self._userids: dict[str, str] = {}  # ecology: OA user id -> its userid header
        self._redis = redis_client
        self._acting: OrderedDict[str, TokenCache] = OrderedDict()  # login as_user: per user
        kind = spec.type
        if kind is AuthType.API_KEY:
            value = self._text(spec.value)
            if spec.placement is Placement.QUERY:
                self.static.params[spec.name] = value
            else:
                self.static.headers[spec.name] = value
        elif kind is AuthType.BEARER:
            self.static.headers["Authorization"] = f"Bearer {self._text(spec.token)}"
        elif kind is AuthType.BASIC:
            pair = f"{self._text(spec.username)}:{self._text(spec.password)}".encode()
            self.static.headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        elif kind is AuthType.OAUTH2_REFRESH_TOKEN and spec.rotates and store is None:
            raise ConfigError(
                "connectors.yaml",
                [(f"{config.name}.declarative.auth", "expected the runtime's refresh token store")],
            )
        elif kind is AuthType.ECOLOGY:
            self._spk = self._ecology_key()
        fetchers: Mapping[AuthType, Callable[[], tuple[str, float]]] = {
            AuthType.OAUTH2_CLIENT_CREDENTIALS: self._client_credentials,
            AuthType.OAUTH2_REFRESH_TOKEN: self._refresh,
            AuthType.LOGIN: self._login,
            AuthType.ECOLOGY: self._applytoken,
        }
        if kind in fetchers:
            self.tokens = TokenCache(
                redis_client,
                f"token:rest:{config.name}",
                fetchers[kind],
                TOKEN_REFRESH_MARGIN_S,
                vendor="rest",
            )

    def bind(self, client: HttpClient) -> None:
        """The client token fetches go through (built after this, with our token cache)."""
        self._client = client

    def place(self, token: str) -> AuthParts:
        """Where a fetched token goes on a request."""
        if self.spec.type is AuthType.ECOLOGY:  # the acting user comes with `acting`
            return AuthParts(headers={"appid": self._credential("appid"), "token": token})
        use: TokenUse = self.spec.use
        if use.placement is Placement.QUERY:
            return AuthParts(params={use.name: token})
        return AuthParts(headers={use.name: f"{use.prefix}{token}"})

    def tokens_as_user(self, context: Mapping[str, Any]) -> TokenCache | None:
        """login with `as_user`: the token cache of the user a decision is made as (the token
        request adds `as_user` rendered with the decision's templates); None without it."""
        if not self.spec.as_user:
            return None
        extra = {key: template.value(context) for key, template in self.spec.as_user.items()}
        if any(value in (None, "") for value in extra.values()):
            raise VendorRejected(
                "rest", "no_acting_user", "no user to act as: as_user rendered empty"
            )
        who = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
        key = who.hexdigest()[:24]
        cache = self._acting.get(key)
        if cache is None:
            cache = TokenCache(
                self._redis,
                f"token:rest:{self.config.name}:as:{key}",
                lambda: self._login(extra),
                TOKEN_REFRESH_MARGIN_S,
                vendor="rest",
            )
            self._acting[key] = cache
            while len(self._acting) > ACTING_TOKENS_KEPT:
                self._acting.popitem(last=False)
        self._acting.move_to_end(key)
        return cache

    def acting(self, context: Mapping[str, Any]) -> dict[str, str]:
        """ecology: the `userid` header of the user a call acts as (`userid`, a template:
        `as_user` is set when deciding as an approver), encrypted once per user."""
        if self.spec.type is not AuthType.ECOLOGY:
            return {}
        user = self._text_in(self.spec.userid, context)
        if user not in self._userids:
            self._userids[user] = self._encrypt(user)
        return {"userid": self._userids[user]}

    def sign(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        """hmac: the signature (and its timestamp) of this very request; {} otherwise."""
        spec = self.spec
        if spec.type is not AuthType.HMAC or spec.key is None or spec.message is None:
            return {}
        timestamp = str(int(time.time()))
        values = {
            **self._context,
            "method": method,
            "path": "/" + path.lstrip("/"),
            "query": query,
            "body": body.decode("utf-8", "replace"),
            "timestamp": timestamp,
            "nonce": secrets.token_hex(8),
        }
        message = spec.message.render(values).encode()
        digest = hmac.new(spec.key.render(values).encode(), message, spec.algorithm).digest()
        text = digest.hex() if spec.encoding == "hex" else base64.b64encode(digest).decode()
        headers = {spec.header: text}
        if spec.timestamp_header:
            headers[spec.timestamp_header] = timestamp
        return headers

    # -- token fetches -------------------------------------------------------------------------
    def _client_credentials(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._text(self.spec.client_id),
            "client_secret": self._text(self.spec.client_secret),
        }
        if self.spec.scopes:
            form["scope"] = " ".join(self.spec.scopes)
        body = self._token_call(form)
        return self._token_of(body)

    def _refresh(self) -> tuple[str, float]:
        """Trade the newest refresh token for an access token; a rotated refresh token is
        stored before this returns (so before the access token is ever used)."""
        spec, name = self.spec, self.config.name
        seal = self._text(spec.client_secret)
        configured = self._text(spec.refresh_token)
        stored = self._store.get(name, seal) if self._store is not None else None
        tries = [stored, configured] if stored and stored != configured else [configured]
        for i, refresh in enumerate(tries):
            form = {
                "grant_type": "refresh_token",
                "refresh_token": refresh or "",
                "client_id": self._text(spec.client_id),
                "client_secret": seal,
            }
            try:
                body = self._token_call(form)
            except ConfigError:
                if i + 1 < len(tries):
                    # The stored one was refused: the operator may have authorised again and
                    # written the new token under credentials; try that one.
                    log.warning("connector %s: the stored refresh token was refused", name)
                    continue
                raise
            rotated = (spec.refresh_token_path or REFRESH_TOKEN).first(body)
            if spec.rotates and rotated and self._store is not None:
                self._store.put(name, str(rotated), seal)  # durable before any use
            return self._token_of(body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _login(self, as_user: Mapping[str, Any] | None = None) -> tuple[str, float]:
        form = {key: template.value(self._context) for key, template in self.spec.body.items()}
        if as_user is None:
            body = self._token_call(form)
        else:
            try:
                body = self._token_call({**form, **as_user})
            except ConfigError:
                # The credentials serve the connector's own token; refused with this user added,
                # it is the user the API does not know (or may not act as): this decision's
                # refusal, not the connector's.
                raise VendorRejected(
                    "rest", "acting_user_refused", "the token endpoint refused this user"
                ) from None
        return self._token_of(body)

    def _applytoken(self) -> tuple[str, float]:
        headers = {
            "appid": self._credential("appid"),
            "secret": self._encrypt(self._credential("secret")),
            "time": str(self.spec.token_ttl_s),
        }
        body = self._token_call({}, path=ECOLOGY_APPLYTOKEN, headers=headers)
        token = body.get("token")
        if not token:
            raise VendorUnavailable("rest", "no_token", "applytoken gave no token")
        return str(token), float(self.spec.token_ttl_s)

    def _token_call(
        self,
        form: Mapping[str, Any],
        *,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        assert self._client is not None  # noqa: S101 - bound as the connector is made
        url = path or self.spec.token_url
        base_url = None
        if "://" in url:
            scheme, rest = url.split("://", 1)
            host, _, tail = rest.partition("/")
            base_url, url = f"{scheme}://{host}", tail
        as_json = self.spec.body_format == "json"
        payload = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
        try:
            _, body, _ = self._client.request(
                self.spec.method if path is None else "POST",
                url,
                api="auth/token",
                idempotent=True,
                json=dict(form) if as_json and form else None,
                data=None if as_json or not form else payload,
                headers=headers,
                base_url=base_url,
            )
        except (VendorRejected, TokenExpired) as exc:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials", f"the token endpoint refused them ({exc})")],
            ) from None
        return body

    def _token_of(self, body: Mapping[str, Any]) -> tuple[str, float]:
        token = (self.spec.token_path or ACCESS_TOKEN).first(body)
        if not token:
            raise VendorUnavailable("rest", "no_token", "the token answer gave none")
        expires = (self.spec.expires_in_path or EXPIRES_IN).first(body)
        try:
            ttl = float(expires) if expires is not None else self.spec.ttl_s
        except (TypeError, ValueError):
            ttl = self.spec.ttl_s
        return str(token), max(ttl, 10.0)

    # -- helpers -------------------------------------------------------------------------------
    def _text(self, template: Any) -> str:
        return self._text_in(template, self._context)

    @staticmethod
    def _text_in(template: Any, context: Mapping[str, Any]) -> str:
        return "" if template is None else str(template.render(context))

    def _credential(self, name: str) -> str:
        secret = self.config.credentials.get(name)
        if secret is None:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials.{name}", "expected it for auth type ecology")],
            )
        return secret.reveal()

    def _ecology_key(self) -> rsa.RSAPublicKey:
        for name in ECOLOGY_CREDENTIALS:
            self._credential(name)
        try:
            key = serialization.load_der_public_key(base64.b64decode(self._credential("spk")))
        except (ValueError, binascii.Error):
            key = None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials.spk", "expected regist's base64 RSA key")],
            )
        return key

    def _encrypt(self, text: str) -> str:
        """b64(RSA_PKCS1v1_5(spk, text)), as e-cology wants `secret` and `userid`."""
        return base64.b64encode(self._spk.encrypt(text.encode(), padding.PKCS1v15())).decode()


def digest_of(values: list[str]) -> str:
    """A short digest of a page's record ids: two pages alike are one page read twice."""
    return hashlib.sha256("\0".join(values).encode()).hexdigest()[:16]
