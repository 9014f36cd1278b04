"""WeCom (企业微信) emulator: the `/cgi-bin` contract of platform-apis.md §1, served locally.

Written from WeCom's documented contract, never from our connector: paths, parameter names,
field names and `errcode`s are WeCom's own, and every answer is HTTP 200 with `errcode`/`errmsg`
as WeCom sends them. Callbacks are XML, encrypted with WXBizMsgCrypt (wxcrypto.py), signed, and
always sent through `core.deliver_callback` so the duplicate and out-of-order faults apply.

Settings (store.set_setting("wecom", key, value)):
    callback_url      where callbacks go; callback template cards need it (errcode 43012)
    token_ttl_s       access_token lifetime (default 7200, WeCom's)
    rate_limit_scale  multiplies WeCom's limits (approval/checkin 600/min, day data 100/min);
                      0 turns them off

Not emulated (documented here so no one relies on it): the per-member 30/min and 1000/h message
cap that WeCom enforces by silently dropping the excess; tags (every `totag` is invalid).

One module per API family, each a mixin of `WeComBase` (base.py); `WeComEmulator` below
combines them and holds the one route table: auth.py, approvals.py, checkin.py, contacts.py,
messages.py (messages, template cards, group chats), callbacks.py (the simulated user),
seeding.py.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.wecom.approvals import Approvals
from sync_pipeline.devtools.sandbox.wecom.auth import Auth
from sync_pipeline.devtools.sandbox.wecom.base import CST_MS, PLATFORM, sp_no_for, userid_for
from sync_pipeline.devtools.sandbox.wecom.callbacks import Callbacks
from sync_pipeline.devtools.sandbox.wecom.checkin import Checkins
from sync_pipeline.devtools.sandbox.wecom.contacts import Contacts
from sync_pipeline.devtools.sandbox.wecom.messages import Messages
from sync_pipeline.devtools.sandbox.wecom.seeding import Seeding

__all__ = ["CST_MS", "WeComEmulator", "sp_no_for", "userid_for"]


class WeComEmulator(Auth, Approvals, Checkins, Contacts, Messages, Callbacks, Seeding):
    """One WeCom corp with one self-built app, its approvals, checkins, messages and chats."""

    platform = PLATFORM
    title = "WeCom (企业微信)"
    port_offset = 2

    def routes(self) -> list[BaseRoute]:
        api = self._api
        return [
            Route("/cgi-bin/gettoken", self._gettoken, methods=["GET"]),
            Route("/cgi-bin/oa/getapprovalinfo", api(self.getapprovalinfo), methods=["POST"]),
            Route("/cgi-bin/oa/getapprovaldetail", api(self.getapprovaldetail), methods=["POST"]),
            Route("/cgi-bin/checkin/getcheckindata", api(self.getcheckindata), methods=["POST"]),
            Route(
                "/cgi-bin/checkin/getcheckin_daydata",
                api(self.getcheckin_daydata),
                methods=["POST"],
            ),
            Route("/cgi-bin/user/get", api(self.user_get), methods=["GET"]),
            Route("/cgi-bin/user/list", api(self.user_list), methods=["GET"]),
            Route("/cgi-bin/user/simplelist", api(self.user_simplelist), methods=["GET"]),
            Route("/cgi-bin/user/list_id", api(self.user_list_id), methods=["POST"]),
            Route("/cgi-bin/department/list", api(self.department_list), methods=["GET"]),
            Route("/cgi-bin/message/send", api(self.message_send), methods=["POST"]),
            Route(
                "/cgi-bin/message/update_template_card",
                api(self.update_template_card),
                methods=["POST"],
            ),
            Route("/cgi-bin/appchat/create", api(self.appchat_create), methods=["POST"]),
            Route("/cgi-bin/appchat/get", api(self.appchat_get), methods=["GET"]),
            Route("/cgi-bin/appchat/send", api(self.appchat_send), methods=["POST"]),
        ]
