"""DingTalk (钉钉) emulator: both API families of platform-apis.md §2, served locally.

Written from DingTalk's documented contract, never from our connector. DingTalk has two API
families on two hosts; here both share one port, told apart by path as on the real hosts:
    new  /v1.0/...  header x-acs-dingtalk-access-token; errors are HTTP 4xx/5xx with
                    {code, requestid, message}
    old  /gettoken, /topapi/..., /attendance/...  query ?access_token=; errors are HTTP 200
                    with {errcode, errmsg}
One access token serves both, as for a real internal app. Callbacks use the HTTP event
subscription: POST ?msg_signature&timestamp&nonce with {"encrypt": ...} (wxcrypto.py, receiver
id = appKey), sent through `core.deliver_callback`; the receiver must answer the encrypted
"success", and the emulator checks that it did.

Settings (store.set_setting("dingtalk", key, value)):
    callback_url      the event subscription URL
    events_mode       "stream": events and card presses go to Stream clients instead
                      (stream.py; stream_ping_s, stream_repush_s, stream_disconnect_s)
    token_ttl_s       access token lifetime (default 7200)
    rate_limit_scale  multiplies the 20 QPS per app per API; 0 turns it off
    monthly_quota     calls per app per calendar month before 90020 (absent or 0: no quota)
    clock_ms          the emulator's "now" for the 365-day look-back of instanceIds/query;
                      seed() sets it to the end of the world's data (2026), so the data stays
                      queryable whatever the machine's clock says

Unconfirmed details (each marked where it is used): the HTTP status of throttle answers (403,
observed in client logs), the codes of parameter errors, the answer to a repeated outTrackId,
and the card callback over HTTP (DingTalk recommends Stream mode, a websocket; the sandbox sends
the Stream payload through the HTTP event subscription instead).

The third-party process centre is described in process_centre.py.

One module per API family, each a mixin of `DingTalkBase` (base.py); `DingTalkEmulator` below
combines them and holds the one route table: auth.py, workflow.py, process_centre.py,
attendance.py, contacts.py, messages.py (work notifications, robot messages), cards.py
(interactive cards), stream.py (Stream mode), callbacks.py (the simulated user), seeding.py.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from sync_pipeline.devtools.sandbox.dingtalk.attendance import Attendance
from sync_pipeline.devtools.sandbox.dingtalk.auth import Auth
from sync_pipeline.devtools.sandbox.dingtalk.base import (
    PLATFORM,
    PROCESS_CODES,
    conversation_id_for,
    userid_for,
)
from sync_pipeline.devtools.sandbox.dingtalk.callbacks import Callbacks
from sync_pipeline.devtools.sandbox.dingtalk.cards import Cards
from sync_pipeline.devtools.sandbox.dingtalk.contacts import Contacts
from sync_pipeline.devtools.sandbox.dingtalk.messages import Messages
from sync_pipeline.devtools.sandbox.dingtalk.process_centre import ProcessCentre
from sync_pipeline.devtools.sandbox.dingtalk.seeding import WORLD_END_MS, Seeding
from sync_pipeline.devtools.sandbox.dingtalk.workflow import (
    Workflow,
    instance_id_for,
    instance_kind,
)

__all__ = [
    "PROCESS_CODES",
    "WORLD_END_MS",
    "DingTalkEmulator",
    "conversation_id_for",
    "instance_id_for",
    "instance_kind",
    "userid_for",
]


class DingTalkEmulator(
    Auth, Workflow, ProcessCentre, Attendance, Contacts, Messages, Cards, Callbacks, Seeding
):
    """One DingTalk org with one internal app: workflow, attendance, notifications, cards."""

    platform = PLATFORM
    title = "DingTalk (钉钉)"
    port_offset = 3

    def routes(self) -> list[BaseRoute]:
        new, old = self._new_api, self._old_api
        return [
            Route("/v1.0/oauth2/accessToken", self._access_token, methods=["POST"]),
            Route("/gettoken", self._gettoken, methods=["GET"]),
            Route("/v1.0/gateway/connections/open", self._open_connection, methods=["POST"]),
            WebSocketRoute("/connect", self._connect),
            Route(
                "/v1.0/workflow/processes/instanceIds/query",
                new(self.list_instance_ids),
                methods=["POST"],
            ),
            Route("/v1.0/workflow/processInstances", new(self.get_instance), methods=["GET"]),
            Route(
                "/v1.0/workflow/processInstances/execute",
                new(self.execute_task),
                methods=["POST"],
            ),
            Route(
                "/v1.0/card/instances/createAndDeliver",
                new(self.create_and_deliver),
                methods=["POST"],
            ),
            Route("/v1.0/card/instances", new(self.update_card), methods=["PUT"]),
            Route("/v1.0/robot/groupMessages/send", new(self.group_send), methods=["POST"]),
            Route(
                "/v1.0/robot/oToMessages/batchSend", new(self.robot_batch_send), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/schemas", new(self.pc_save_schema), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/schemaNames/processCodes",
                new(self.pc_code_by_name),
                methods=["GET"],
            ),
            Route(
                "/v1.0/workflow/processCentres/instances",
                new(self.pc_save_instance),
                methods=["POST"],
            ),
            Route(
                "/v1.0/workflow/processCentres/instances",
                new(self.pc_update_instance),
                methods=["PUT"],
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks", new(self.pc_create_tasks), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks", new(self.pc_update_tasks), methods=["PUT"]
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks/cancel",
                new(self.pc_cancel_tasks),
                methods=["POST"],
            ),
            Route(
                "/v1.0/workflow/processCentres/todoTasks", new(self.pc_todo_tasks), methods=["GET"]
            ),
            Route("/attendance/list", old(self.attendance_list), methods=["POST"]),
            Route("/topapi/v2/department/listsub", old(self.department_listsub), methods=["POST"]),
            Route("/topapi/v2/user/list", old(self.user_list), methods=["POST"]),
            Route("/topapi/v2/user/get", old(self.user_get), methods=["POST"]),
            Route(
                "/topapi/message/corpconversation/asyncsend_v2",
                old(self.asyncsend),
                methods=["POST"],
            ),
            Route(
                "/topapi/message/corpconversation/getsendresult",
                old(self.getsendresult),
                methods=["POST"],
            ),
        ]
