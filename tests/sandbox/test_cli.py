"""The command line a person uses, the loopback-only rule, and a gateway that is down."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sandbox.harness import SandboxStack
from tests.sandbox.fixtures import clean, session, stack  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = (2.0, 5.0)


def sandbox_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=REPO, capture_output=True, text=True, timeout=30
    )


def test_cli_flips_faults_and_reads_stats(stack: SandboxStack, session: requests.Session) -> None:
    added = sandbox_cli("fault", "http_503", "--count", "1", "--retry-after", "3", "--proxy", stack.proxy_url)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["kind"] == "http_503"
    listed = json.loads(sandbox_cli("faults", "--proxy", stack.proxy_url).stdout)
    assert [rule["kind"] for rule in listed["faults"]] == ["http_503"]

    resp = session.get(stack.proxy_url + "/v1/balance", timeout=TIMEOUT)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "3"

    stats = json.loads(sandbox_cli("stats", "--proxy", stack.proxy_url).stdout)
    assert stats["faults_applied"] == {"http_503": 1}
    sandbox_cli("fault", "http_500", "--proxy", stack.proxy_url)
    assert json.loads(sandbox_cli("clear", "--proxy", stack.proxy_url).stdout) == {"cleared": 1}
    assert json.loads(sandbox_cli("mode", "fast", "--proxy", stack.proxy_url).stdout) == {"fast": True}
    assert json.loads(sandbox_cli("reset", "--proxy", stack.proxy_url).stdout)["reset"] is True


def test_cli_reports_a_rejected_rule(stack: SandboxStack) -> None:
    result = sandbox_cli("fault", "refuse", "--count", "5", "--proxy", stack.proxy_url)
    assert result.returncode == 1
    assert "time-based" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("proxy", "--listen", "0.0.0.0:0"),
        ("proxy", "--listen", "[::]:0"),
        ("gateway", "--host", "0.0.0.0", "--port", "0"),
    ],
)
def test_servers_refuse_non_loopback_addresses(args: tuple[str, ...]) -> None:
    result = sandbox_cli(*args)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr


def test_servers_listen_on_loopback_only(stack: SandboxStack) -> None:
    assert stack.gateway_url.startswith("http://127.0.0.1:")
    assert stack.proxy_url.startswith("http://127.0.0.1:")
    for url in (stack.gateway_url, stack.proxy_url):
        port = int(url.rsplit(":", 1)[1])
        # On another local address of this host the port must be closed.
        for other in _non_loopback_addresses():
            with socket.socket() as probe:
                probe.settimeout(1.0)
                assert probe.connect_ex((other, port)) != 0, f"{url} reachable on {other}"


def _non_loopback_addresses() -> list[str]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
    except OSError:
        return []
    return [] if address.startswith("127.") else [address]


def test_gateway_down_is_502_and_not_saved() -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with SandboxStack(upstream_url=dead) as stack, requests.Session() as session:
        session.trust_env = False
        headers = {"Idempotency-Key": "k-down", "Authorization": "Bearer sk_test_down"}
        form = {"amount": "100", "currency": "eur"}
        for _ in range(2):  # the second is not a replay: nothing was saved
            resp = session.post(stack.proxy_url + "/v1/payment_intents", data=form, headers=headers, timeout=TIMEOUT)
            assert resp.status_code == 502
            assert resp.json()["error"]["type"] == "api_error"
            assert "Idempotent-Replayed" not in resp.headers
        stats = stack.stats()
        assert (stats["upstream_errors"], stats["forwarded"], stats["idempotency_keys"]) == (2, 0, 0)
        # fast mode needs no gateway at all
        stack.set_fast(True)
        resp = session.post(stack.proxy_url + "/v1/payment_intents", data=form, headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 200
        assert len(stack.intents_for("order", "none")) == 0
