"""A loopback TCP proxy that can cut a dependency off and bring it back (fault injection)."""

from __future__ import annotations

import socket
import threading
import time

FLUSH_WAIT = 2.0  # s a flushing cut waits for the server to close its connections


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream. `cut()` drops every live connection and
    refuses new ones (the port is closed), like a server that went away; `restore()`
    listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = _free_port()
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()  # (client, server)
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def pause(self) -> None:
        """A server that hangs (stopped, stuck in a slow command) but keeps its connections:
        connects still succeed, nothing is answered; no byte is lost."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self, *, flush: bool = False) -> None:
        """Refuse new connections and drop every live one. With `flush`, as when the server
        process stops: it sees each connection end and closes it, and what it had already
        answered still reaches the client (an abrupt cut also loses the answers this proxy
        holds between reading and forwarding them, like a broken network)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave
            # the port listening until that call returned.
            _close(listener)
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        if flush:
            for _, server in pairs:
                try:
                    server.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            deadline = time.monotonic() + FLUSH_WAIT
            while time.monotonic() < deadline and any(server.fileno() != -1 for _, server in pairs):
                time.sleep(0.005)
        for client, server in pairs:
            _close(client)
            _close(server)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while this one was connecting
                    _close(client)
                    _close(server)
                    return
                self._pairs.add((client, server))
            threading.Thread(target=self._to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                self._flowing.wait()
                try:
                    server.sendall(data)
                except OSError:
                    return  # the server side is closing: _to_client forwards its last answers
        except OSError:
            pass
        _close(client)
        _close(server)

    def _to_client(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                self._flowing.wait()
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)
            _close(client)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
