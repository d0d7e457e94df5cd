"""SandboxStack: gateway + proxy as real subprocesses, for tests and bench scripts.

    with SandboxStack() as stack:           # free loopback ports chosen by the OS
        requests.post(stack.proxy_url + "/v1/payment_intents", ...)
        stack.fault("reset_after", count=1)
        ...

No pytest here: bench scripts use it as is. Each server binds its own port (port 0 lets
the OS choose, race-free, unlike probing for a free port and passing it on) and publishes
its URL through a "ready file" that we poll; its output goes to a log file, not a pipe
that nobody reads and that would eventually block it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO, Any

from sandbox.client import ControlClient

_REPO_ROOT = Path(__file__).resolve().parent.parent


class SandboxError(RuntimeError):
    """The stack could not start (the message carries the server's log tail)."""


def _stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SandboxStack:
    def __init__(
        self,
        gateway_port: int = 0,
        proxy_port: int = 0,
        *,
        fast: bool = False,
        upstream_url: str | None = None,
        python: str | None = None,
        startup_timeout: float = 20.0,
        log_dir: str | os.PathLike[str] | None = None,
        log_to_console: bool = False,
    ) -> None:
        self.gateway_port = gateway_port
        self.proxy_port = proxy_port
        self.fast = fast
        self.upstream_url = upstream_url  # given: no gateway of our own, proxy in front of it
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.log_to_console = log_to_console
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.gateway_url = ""
        self.proxy_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._client: ControlClient | None = None
        # Stop the servers even if the caller forgets to (or an exception skips stop()).
        self._finalizer = weakref.finalize(self, _stop_processes, self._procs, 5.0)

    # ---- life cycle -----------------------------------------------------------------

    def __enter__(self) -> SandboxStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> SandboxStack:
        try:
            if self.upstream_url:
                self.gateway_url = self.upstream_url.rstrip("/")
            else:
                self.gateway_url = self._spawn("gateway", ["--port", str(self.gateway_port)])
            proxy_args = ["--listen", f"127.0.0.1:{self.proxy_port}", "--upstream", self.gateway_url]
            if self.fast:
                proxy_args.append("--fast")
            self.proxy_url = self._spawn("proxy", proxy_args)
            # A refused control call during a `refuse` fault is retried for a while.
            self._client = ControlClient(self.proxy_url, refused_grace=10.0)
            self._client.health()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        _stop_processes(self._procs, timeout)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def running(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def _spawn(self, role: str, args: list[str]) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ready = self.log_dir / f"{role}.ready"
        ready.unlink(missing_ok=True)
        log_path = self.log_dir / f"{role}.log"
        out: IO[bytes] | None = None
        if not self.log_to_console:
            out = open(log_path, "wb")
            self._logs.append(out)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [self.python, "-m", "sandbox", role, *args, "--ready-file", str(ready), "--parent-pid", str(os.getpid())]
        proc = subprocess.Popen(
            cmd, cwd=_REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None
        )
        self._procs.append(proc)

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if ready.exists():
                return ready.read_text().strip()
            if proc.poll() is not None:
                raise SandboxError(f"{role} exited with {proc.returncode}:\n{self._tail(log_path)}")
            time.sleep(0.02)
        raise SandboxError(f"{role} not ready after {self.startup_timeout}s:\n{self._tail(log_path)}")

    @staticmethod
    def _tail(path: Path, lines: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- control --------------------------------------------------------------------

    @property
    def control(self) -> ControlClient:
        if self._client is None:
            raise SandboxError("SandboxStack not started")
        return self._client

    def fault(self, kind: str, **rule: Any) -> dict[str, Any]:
        """Add a fault rule; keywords as in the control API (count, probability, method,
        path_prefix, delay_ms, retry_after, duration_ms). Returns the stored rule."""
        return self.control.fault(kind, **rule)

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self.control.faults()["faults"]
        return rules

    def clear(self) -> None:
        self.control.clear()

    def stats(self) -> dict[str, Any]:
        return self.control.stats()

    def reset(self, upstream: bool = True) -> None:
        self.control.reset(upstream=upstream)

    def set_fast(self, fast: bool) -> None:
        self.control.set_fast(fast)

    def intents_for(self, metadata_key: str, value: str) -> list[dict[str, Any]]:
        """Payment intents (localstripe's and fast mode's) with metadata[key] == value.

        localstripe cannot filter its list, so the proxy pages through all of it
        (GET /_sandbox/intents). Reads bypass fault rules and are not counted in stats.
        """
        return self.control.intents_for(metadata_key, value)
