"""E9 unified todo (`/rest/ofs/...`, 异构系统统一待办): receive, and delete per user or per flow."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.oa.base import PLATFORM, JSONResponse, OABase

OFS_ISREMARK = {"0": "todo", "2": "handled", "4": "done", "8": "cc", "9": "cc read"}
OFS_REQUIRED = (
    "syscode",
    "flowid",
    "requestname",
    "workflowname",
    "nodename",
    "pcurl",
    "isremark",
    "viewtype",
    "creator",
    "createdatetime",
    "receiver",
    "receivedatetime",
    "receivets",
)


class UnifiedTodo(OABase):
    """Unified todos, authenticated by the registered system code instead of a token."""

    def _ofs(
        self, path: str, fn: Callable[[dict[str, Any]], tuple[bool, str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """E9 whitelists /rest/ofs and trusts the registered system code (syscode) instead of a
        token; bodies are JSON."""

        async def endpoint(request: Request) -> Response:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return _ofs_answer(False, "the body must be a JSON object")
            syscode = str(data.get("syscode", ""))
            if self._rate_limited(f"ofs:{syscode}"):
                return self.throttle_response()
            if syscode != self._creds["ofs_syscode"]:
                return _ofs_answer(False, f"异构系统标识 {syscode or '(none)'} 未注册")
            ok, message = await run_in_threadpool(fn, data)
            if ok:
                self.store.record(PLATFORM, path, syscode, data, None)
            return _ofs_answer(ok, message)

        return endpoint

    def _ofs_receive(self, data: dict[str, Any]) -> tuple[bool, str]:
        """Create or update one receiver's todo; `receivets` orders concurrent updates."""
        missing = [k for k in OFS_REQUIRED if str(data.get(k, "")).strip() == ""]
        if missing:
            return (False, f"missing {', '.join(missing)}")
        isremark = str(data["isremark"])
        if isremark not in OFS_ISREMARK:
            return (False, f"isremark must be one of {', '.join(OFS_ISREMARK)}")
        receiver = self._receiver(str(data["receiver"]))
        if receiver is None:
            return (False, f"接收人 {data['receiver']} 不存在")
        try:
            receivets = int(data["receivets"])
        except (TypeError, ValueError):
            return (False, "receivets must be a millisecond timestamp")
        todo_id = f"{data['syscode']}|{data['flowid']}|{receiver}"
        with self._lock:
            old = self.store.get(PLATFORM, "todo", todo_id)
            if old is not None and int(old["receivets"]) > receivets:
                # E9 keeps the newer state when an older update arrives late.
                return (True, "ignored: a newer receivets is already stored")
            body = {**data, "receivets": receivets, "userid": receiver, "deleted": False}
            body["state"] = OFS_ISREMARK[isremark]
            self.store.put(PLATFORM, "todo", todo_id, body)
        return (True, "成功" if old is None else "更新成功")

    def _ofs_delete_user(self, data: dict[str, Any]) -> tuple[bool, str]:
        receiver = self._receiver(str(data.get("userid", "")))
        if receiver is None:
            return (False, f"userid {data.get('userid')} 不存在")
        return self._ofs_mark_deleted(str(data.get("flowid", "")), receiver)

    def _ofs_delete(self, data: dict[str, Any]) -> tuple[bool, str]:
        return self._ofs_mark_deleted(str(data.get("flowid", "")), None)

    def _ofs_mark_deleted(self, flowid: str, receiver: str | None) -> tuple[bool, str]:
        """Deleted todos stay in the store, marked, so tests can see what was removed."""
        syscode = self._creds["ofs_syscode"]
        with self._lock:
            todos = self.store.list(PLATFORM, "todo", equals={"syscode": syscode, "flowid": flowid})
            hit = [
                t
                for t in todos
                if not t["deleted"] and (receiver is None or t["userid"] == receiver)
            ]
            if not hit:
                return (False, f"flowid {flowid} 不存在")
            self.store.put_many(
                PLATFORM,
                "todo",
                (
                    (f"{syscode}|{flowid}|{t['userid']}", {**t, "deleted": True}, None, None)
                    for t in hit
                ),
            )
        return (True, "删除成功")


def _ofs_answer(ok: bool, message: str) -> JSONResponse:
    # E9's unified-todo answer; the exact key set is unconfirmed.
    return JSONResponse({"operResult": "1" if ok else "0", "message": message})
