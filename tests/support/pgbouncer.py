"""Debian's PgBouncer in transaction pooling mode on a free loopback port, in front of the test
PostgreSQL, for tests and bench scripts (installed by scripts/pgbouncer.sh)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.processes import _stop
from tests.support.tcpproxy import _free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return os.access(BINARY, os.X_OK)


@dataclass
class Bouncer:
    host: str
    port: int
    user: str
    log: Path

    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def show(self, what: str) -> list[dict]:
        """SHOW POOLS / STATS / CLIENTS … from PgBouncer's admin console."""
        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="pgbouncer",
                             autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [c.name for c in cursor.description or []]
            return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


@contextlib.contextmanager
def pgbouncer(*, server_host: str, server_port: int, user: str, pool_size: int = 10,
              max_client_conn: int = 200) -> Iterator[Bouncer]:
    port = _free_port()
    # A folder of its own straight under the temporary directory: when PgBouncer drops to the
    # postgres account it must reach its files, which a root-only pytest folder would forbid.
    workdir = Path(tempfile.mkdtemp(prefix="payops-pgbouncer-"))
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    log = workdir / "pgbouncer.log"
    (workdir / "pgbouncer.ini").write_text("\n".join([
        "[databases]",
        f"* = host={server_host} port={server_port}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {workdir / 'userlist.txt'}",
        f"admin_users = {user}",
        f"stats_users = {user}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        f"max_client_conn = {max_client_conn}",
        "server_reset_query =",
        # psycopg and Django send these at connect; PgBouncer keeps application_name itself.
        "ignore_startup_parameters = extra_float_digits,options",
        f"logfile = {log}",
        f"pidfile = {workdir / 'pgbouncer.pid'}",
        "",
    ]))
    cmd = [BINARY, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: it drops to the postgres account.
        account = pwd.getpwnam("postgres")
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, account.pw_uid, account.pw_gid)
        cmd[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = Bouncer("127.0.0.1", port, user, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                bouncer.show("VERSION")
                break
            except psycopg.Error:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start on port {port}: {err}{tail}") from None
                time.sleep(0.05)
        yield bouncer
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
