"""Agora Chat user system (`/users`): register (one or a batch), list, get."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, AgoraError, _bad
from sync_pipeline.devtools.sandbox.core import now_ms

USERNAME = re.compile(r"^[a-z0-9_.-]{1,64}$")

USERS_BATCH_MAX = 100  # GET /users `limit`, per the user-management page


class Users(AgoraBase):
    """User registration and lookup."""

    def _register(self, request: Request, body: Any) -> dict[str, Any]:
        batch = isinstance(body, list)
        wanted = body if batch else [body]
        if not wanted or (batch and len(wanted) > 60):  # 60 per batch (unconfirmed)
            raise _bad("This is an invalid request.")
        for entry in wanted:
            name = entry.get("username") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise _bad("Entity 'user' requires a property named username.")
            if not USERNAME.match(name):
                raise _bad(f"{name} is not legal.")
        created, failed = [], []
        with self._lock:
            for entry in wanted:
                name = str(entry["username"])
                if self.store.get(PLATFORM, "user", name) is not None:
                    if not batch:
                        raise AgoraError(
                            400,
                            "duplicate_unique_property_exists",
                            "Application null Entity user requires that property named "
                            f"username be unique, value of {name} exists.",
                        )
                    failed.append(
                        {"username": name, "registerUserFailReason": f"the {name} already exists"}
                    )
                    continue
                user = _user(name, str(uuid.uuid4()), str(entry.get("nickname", "")))
                self.store.put(PLATFORM, "user", name, user)
                created.append(user)
            if created:
                names = [u["username"] for u in created]
                self.store.record(PLATFORM, "POST /users", "app", {"usernames": names})
        answer: dict[str, Any] = {"entities": created}
        if failed:
            answer["data"] = failed
        return answer

    def _list_users(self, request: Request, body: Any) -> dict[str, Any]:
        """Query users in batches: `limit` 1..100 (default 10), an opaque `cursor` while more
        remain; the last page has no cursor."""
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError:
            raise _bad("limit must be a number.") from None
        if not 1 <= limit <= USERS_BATCH_MAX:
            raise _bad(f"limit must be 1 to {USERS_BATCH_MAX}.")
        cursor = request.query_params.get("cursor")
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        except (ValueError, UnicodeDecodeError):
            raise _bad("the cursor is invalid.") from None
        users = self.store.list(PLATFORM, "user", offset=offset, limit=limit + 1)
        answer: dict[str, Any] = {"entities": users[:limit], "count": min(limit, len(users))}
        if len(users) > limit:
            answer["cursor"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return answer

    def _get_user(self, request: Request, body: Any) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", request.path_params["username"])
        if user is None:
            raise AgoraError(404, "service_resource_not_found", "Service resource not found.")
        return {"entities": [user], "count": 1}


def _username(employee_no: str) -> str:
    return employee_no.lower()


def _user(
    username: str, user_uuid: str, nickname: str, created_ms: int | None = None
) -> dict[str, Any]:
    stamp = now_ms() if created_ms is None else created_ms
    user: dict[str, Any] = {
        "uuid": user_uuid,
        "type": "user",
        "created": stamp,
        "modified": stamp,
        "username": username,
        "activated": True,
    }
    if nickname:
        user["nickname"] = nickname
    return user
