"""Slow and vanishing clients, and our own bugs: a request's head and body must arrive within
their deadlines (webhooks/server.py), a body cut short is a counted `incomplete` refusal, and
an unexpected exception is a counted `error` answered with a bare 500, logged in one line
(issue 9, point 6)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import requests

from sync_pipeline.config.connector import Vendor
from sync_pipeline.webhooks import app as webhook_app
from sync_pipeline.webhooks.server import BODY_TIMEOUT_S, HEAD_TIMEOUT_S
from tests.conftest import wait_for
from tests.webhooks.conftest import CONNECTOR, Service

SLACK_S = 5.0  # the deadline plus this, on a loaded machine
BYTE_EVERY_S = 0.2


def connect(service: Service) -> socket.socket:
    url = urlsplit(service.url)
    return socket.create_connection((url.hostname, url.port), timeout=10)


@contextmanager
def trickling(sock: socket.socket, data: bytes) -> Iterator[None]:
    """Send `data` one byte every BYTE_EVERY_S from a thread, as a slow client does, until the
    block ends or the server closes the connection."""
    stop = threading.Event()

    def send() -> None:
        for byte in data:
            if stop.wait(BYTE_EVERY_S):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def closed_within(sock: socket.socket, deadline_s: float) -> tuple[bool, bytes]:
    """(whether the server closed the connection within `deadline_s`, what it sent)."""
    sock.settimeout(deadline_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: webhooks\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_given_a_request_head_sent_one_byte_at_a_time_the_connection_is_closed(service) -> None:
    sock = connect(service)
    endless_head = head("/webhooks/sandbox_oa", 2)[:-2] + b"X-Pad: " + b"a" * 10_000

    with trickling(sock, endless_head):
        closed, _ = closed_within(sock, HEAD_TIMEOUT_S + SLACK_S)

    sock.close()
    assert closed


def test_given_a_body_sent_one_byte_at_a_time_it_is_closed_and_counted_incomplete(
    service,
) -> None:
    sock = connect(service)
    sock.sendall(head("/webhooks/sandbox_agora", 10_000))

    with trickling(sock, b"{" + b" " * 9_999):
        closed, _ = closed_within(sock, BODY_TIMEOUT_S + SLACK_S)

    sock.close()
    assert closed
    wait_for(lambda: service.refusals("agora") == {"incomplete": 1}, 10, what="the refusal")


def test_given_a_client_that_disconnects_mid_body_it_is_counted_without_a_traceback(
    service, caplog: pytest.LogCaptureFixture
) -> None:
    sock = connect(service)
    sock.sendall(head("/webhooks/sandbox_agora", 10_000) + b'{"callId": ')

    sock.close()

    wait_for(lambda: service.refusals("agora") == {"incomplete": 1}, 10, what="the refusal")
    assert [r for r in caplog.records if r.exc_info] == []


def test_given_a_request_that_arrives_whole_the_connection_is_kept_alive(service) -> None:
    with requests.Session() as session:
        first = session.get(f"{service.url}/healthz", timeout=10)
        second = session.get(f"{service.url}/healthz", timeout=10)

    assert (first.status_code, second.status_code) == (200, 200)


def test_given_a_handler_bug_it_is_a_bare_500_counted_as_error_and_logged_in_one_line(
    service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(endpoint, incoming):
        raise KeyError("a detail no caller should see")

    monkeypatch.setitem(webhook_app.RECEIVERS, Vendor.OA, broken)  # type: ignore[index]
    caplog.set_level(logging.INFO)
    started = time.time()

    answer = requests.post(service.endpoint("oa"), data=b"{}", timeout=10)

    assert answer.status_code == 500
    assert answer.json() == {"error": "error"}
    assert service.refusals("oa") == {"error": 1}
    lines = [r for r in caplog.records if r.created >= started and r.levelno >= logging.ERROR]
    assert len(lines) == 1
    assert lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage()
    assert CONNECTOR["oa"] in lines[0].getMessage()
    assert "KeyError" in lines[0].getMessage()
