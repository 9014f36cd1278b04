"""The embedded PostgreSQL's system user (devtools/embedded.py), created on a new machine by
whichever command starts first: commands started together (`make test` starts three) agree
on one user that exists, instead of racing two useradds that each rewrite /etc/passwd."""

from __future__ import annotations

import pwd
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sync_pipeline.devtools import embedded

STARTED_TOGETHER = 3


class RacyPasswd:
    """/etc/passwd as two concurrent useradds see it: each reads the file, takes the next uid,
    and writes the file back whole, so the later write loses the earlier one's user."""

    def __init__(self) -> None:
        self.users: dict[str, int] = {}
        self.next_uid = 999

    def getpwnam(self, name: str) -> pwd.struct_passwd:
        uid = self.users[name]  # KeyError, as pwd raises, for a user not (or no longer) there
        return pwd.struct_passwd((name, "x", uid, uid, "", "/nonexistent", "/usr/sbin/nologin"))

    def useradd(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        name = argv[-1]
        read = dict(self.users)
        uid, self.next_uid = self.next_uid, self.next_uid - 1
        time.sleep(0.05)  # between reading the file and writing it back
        if name in read:
            return subprocess.CompletedProcess(argv, 9, b"", b"user already exists")
        self.users = {**read, name: uid}
        return subprocess.CompletedProcess(argv, 0, b"", b"")


@pytest.fixture
def passwd(monkeypatch: pytest.MonkeyPatch) -> RacyPasswd:
    racy = RacyPasswd()
    monkeypatch.setattr(embedded.pwd, "getpwnam", racy.getpwnam)
    monkeypatch.setattr(embedded.shutil, "which", lambda *_, **__: "/usr/sbin/useradd")
    monkeypatch.setattr(embedded.subprocess, "run", racy.useradd)
    return racy


def test_commands_started_together_on_a_new_machine_run_postgres_as_one_user_that_exists(
    passwd: RacyPasswd, tmp_path: Path
) -> None:
    together = threading.Barrier(STARTED_TOGETHER)
    found: list[int] = []

    def first_start() -> None:
        together.wait()
        found.append(embedded.service_account(tmp_path / embedded.ACCOUNT_LOCK).uid)

    threads = [threading.Thread(target=first_start) for _ in range(STARTED_TOGETHER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert found == [passwd.users[embedded.SERVICE_USER]] * STARTED_TOGETHER
