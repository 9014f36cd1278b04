"""Every syncctl command fails in one line (invariant 4), a server that went away included."""

from __future__ import annotations

import pytest
import requests

from sync_pipeline.oneline import one_line_errors


@one_line_errors
def _call(url: str) -> None:
    requests.get(url, timeout=2)


def test_a_server_that_refuses_the_connection_is_one_line_naming_it_and_exit_1(
    capsys: pytest.CaptureFixture[str], unused_port: int
) -> None:
    with pytest.raises(SystemExit) as ended:
        _call(f"http://127.0.0.1:{unused_port}/_sandbox/oa/settings?access_token=s3cret")
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"http://127.0.0.1:{unused_port}/_sandbox/oa/settings did not answer" in err
    assert "s3cret" not in err
    assert "Traceback" not in err


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@one_line_errors
def _wait_for_own_process() -> None:
    raise TimeoutError("the demo's worker did not answer the health task within 120 s; see w.log")


def test_a_wait_for_the_command_s_own_process_that_runs_out_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended:
        _wait_for_own_process()

    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "did not answer the health task within 120 s; see w.log" in err
    assert "Traceback" not in err
