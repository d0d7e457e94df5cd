"""The default database: psycopg 3 with Django's native pool, behind PgBouncer or not."""

from __future__ import annotations

from typing import Any


def database_config(*, url_config: dict[str, Any], test_name: str, role: str, min_connections: int,
                    max_connections: int, connection_timeout: float, idle_timeout: float,
                    pgbouncer: bool) -> dict[str, Any]:
    """DATABASES["default"] from the parsed DATABASE_URL and the pool's sizes (s for times)."""
    return {
        **url_config,
        "ENGINE": "config.postgres",
        # The pool owns connection lifetime; Django refuses persistent connections with it.
        "CONN_MAX_AGE": 0,
        # The pool checks a connection before lending it, so a restarted server costs
        # no failed request once it is back.
        "CONN_HEALTH_CHECKS": True,
        # Behind PgBouncer in transaction mode a named cursor cannot outlive its transaction.
        "DISABLE_SERVER_SIDE_CURSORS": pgbouncer,
        "OPTIONS": {
            "application_name": f"payops-{role}",
            "connect_timeout": 5,
            # Only statements executed with prepare=True (payments/services/create_path_sql.py) are prepared,
            # and none behind PgBouncer; Django's own cursors never prepare.
            "prepare_threshold": None if pgbouncer else 1_000_000,
            "pool": {
                "min_size": min_connections,
                "max_size": max_connections,
                "timeout": connection_timeout,
                "max_idle": idle_timeout,
                "name": f"payops-{role}",
            },
        },
        "TEST": {"NAME": test_name},
    }
