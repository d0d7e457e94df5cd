"""The fault-injection TCP proxy: what a cut does to a connection in use."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def farewell_server() -> Iterator[tuple[str, int]]:
    """Echoes each line; when its client's input ends it sends a last line, then closes, as a
    server answering a command it had already read before it stopped."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)
                conn.sendall(b"last answer\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()
    listener.close()


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    try:
        while chunk := sock.recv(1024):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


@pytest.mark.parametrize("flush, arrives", [(True, True), (False, False)])
def test_a_cut_drops_connections_and_a_flushing_cut_still_delivers_what_the_server_sent(
        farewell_server: tuple[str, int], flush: bool, arrives: bool) -> None:
    with TcpProxy(farewell_server) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        client.sendall(b"hello\n")
        assert client.recv(1024) == b"hello\n"
        proxy.cut(flush=flush)
        rest = _read_until_closed(client)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
        proxy.restore()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as again:
            again.sendall(b"back\n")
            assert again.recv(1024) == b"back\n"
    assert (rest == b"last answer\n") is arrives, rest


def test_a_paused_server_accepts_but_answers_nothing_until_resumed(farewell_server: tuple[str, int]) -> None:
    with TcpProxy(farewell_server) as proxy:
        proxy.pause()
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        client.sendall(b"are you there\n")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(1024)
        proxy.resume()
        client.settimeout(5)
        assert client.recv(1024) == b"are you there\n"
        client.close()
