"""Agora Chat groups (`/chatgroups`): create, and list members."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, AgoraError, _bad, _hex


class Groups(AgoraBase):
    """Chat groups."""

    def _create_group(self, request: Request, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        name, owner = body.get("groupname"), body.get("owner")
        description = body.get("description", "")
        maxusers = body.get("maxusers", 200)
        members = body.get("members", [])
        valid = (
            isinstance(name, str)
            and 0 < len(name) <= 128
            and isinstance(description, str)
            and len(description) <= 512
            and isinstance(maxusers, int)
            and isinstance(body.get("public"), bool)
            and isinstance(members, list)
            and len(members) < maxusers
            and len(json.dumps(body.get("custom", ""))) <= 8192
        )
        if not valid or not isinstance(owner, str):
            raise AgoraError(
                400,
                "invalid_parameter",
                "Some of [groupname, description, maxusers, public, owner] are not valid fields.",
            )
        for username in [owner, *members]:
            if self.store.get(PLATFORM, "user", str(username)) is None:
                raise AgoraError(404, "resource_not_found", f"username {username} doesn't exist")
        group_id = str(10**14 + secrets.randbelow(9 * 10**14))
        group = {
            "groupid": group_id,
            "groupname": name,
            "description": description,
            "public": body["public"],
            "maxusers": maxusers,
            "allowinvites": bool(body.get("allowinvites", False)),
            "membersonly": bool(body.get("membersonly", False)),
            "invite_need_confirm": bool(body.get("invite_need_confirm", True)),
            "owner": owner,
            "members": [str(m) for m in members if m != owner],
            "custom": body.get("custom", ""),
        }
        self.store.put(PLATFORM, "group", group_id, group)
        self.store.record(PLATFORM, "POST /chatgroups", owner, {**body, "groupid": group_id})
        return {"entities": [], "data": {"groupid": group_id}}

    def _group_members(self, request: Request, body: Any) -> dict[str, Any]:
        group = self.store.get(PLATFORM, "group", request.path_params["group_id"])
        if group is None:
            raise AgoraError(404, "service_resource_not_found", "Service resource not found.")
        q = request.query_params
        try:
            num, size = int(q.get("pagenum", "1")), int(q.get("pagesize", "10"))
        except ValueError:
            raise _bad("pagenum and pagesize must be numbers.") from None
        if num < 1 or not 1 <= size <= 100:
            raise _bad("pagesize must be 1 to 100 and pagenum at least 1.")
        everyone = [{"owner": group["owner"]}] + [{"member": m} for m in group["members"]]
        page = everyone[(num - 1) * size : num * size]
        answer: dict[str, Any] = {"entities": [], "data": page, "count": len(page)}
        echoed = {key: [q[key]] for key in ("pagesize", "pagenum") if key in q}
        if echoed:
            answer["params"] = echoed
        return answer


def _group_id(seed: int, group: str) -> str:
    return str(10**14 + int(_hex(seed, "group", group), 16) % (9 * 10**14))
