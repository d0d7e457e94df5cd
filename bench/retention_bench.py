#!/usr/bin/env python
"""Retention benchmark: the idempotency records prune at 1M rows.

A database of its own (``payops_bench_retention``, dropped and created here, then migrated)
gets ``--rows`` idempotency records inserted with ``generate_series``: one API client, each
record with a ~0.3 kB replayed answer like a real payment's, ``created`` spread evenly over the
last ``--days`` days (so about 1/days of them sit inside the 24 h replay window), then
``VACUUM ANALYZE``. ``idempotency_records_prune`` runs once with its default batch (5,000 rows
per DELETE) and is timed; the table's size before and after is read from PostgreSQL.

Writes the figures to docs/benchmarks.md under "## Retention" (only that section is replaced).

    .venv/bin/python bench/retention_bench.py [--rows 1000000] [--days 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.docs import cpu_model, replace_section  # noqa: E402

BENCH_DB = "payops_bench_retention"
SECTION = "## Retention"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("HEALTH_PUBLISH_INTERVAL", "0")

ANSWER = ('{"id": "pay_1fiuXfUq22euqjLJn26Ld9Gq", "status": "succeeded", "amount": 1250, "currency": "eur", '
          '"reference": "order-1001", "gateway_id": "pi_3QxYzAbCdEfGhIjK", "failure_code": null, '
          '"failure_message": null, "next_action": null, "attempts": 1, "created": "2026-12-04T22:00:00Z", '
          '"updated": "2026-12-04T22:00:01Z", "amount_refunded": 0, "refunds": []}')


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def table_size(cursor) -> str:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('payments_idempotencyrecord'))")
    return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10, help="the records' ages are spread over this many days")
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    args = parser.parse_args()

    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from payments.retention import idempotency_records_prune
    from payments.services.api_keys import api_key_create

    call_command("migrate", verbosity=0)
    client, _ = api_key_create(name="bench")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO payments_idempotencyrecord
                (client_id, key, endpoint, request_hash, resource_id, response_status, response_body,
                 locked_until, created)
            SELECT %s, 'key-' || g, 'payments.create', md5(g::text) || md5((g + 1)::text), 'pay_' || g, 201,
                   %s::jsonb, NULL, now() - (g::float / %s) * %s * interval '1 day'
            FROM generate_series(1, %s) g
            """,
            [client.pk, ANSWER, args.rows, args.days, args.rows],
        )
    insert_s = time.perf_counter() - started
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE payments_idempotencyrecord")
        before = table_size(cursor)
        cursor.execute("SELECT count(*) FROM payments_idempotencyrecord WHERE created < now() - interval '24 hours'")
        (due,) = cursor.fetchone()

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    deleted = idempotency_records_prune()
    prune_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM payments_idempotencyrecord")
        (left,) = cursor.fetchone()
        after = table_size(cursor)
    assert deleted == due, (deleted, due)

    figure = (f"Idempotency records prune: {deleted:,} of {args.rows:,} records deleted in {prune_s:.1f} s "
              f"({deleted / prune_s:,.0f} rows/s, 5,000 rows per statement); {left:,} inside the 24 h window kept")
    print(figure)
    if args.no_write:
        return
    section = "\n".join([
        SECTION, "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}); {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, Django {django.get_version()}; PostgreSQL on the same machine, "
        "loopback; load average before the prune {:.1f} (the machine is shared)".format(load_before),
        f"- Command: `.venv/bin/python bench/retention_bench.py --rows {args.rows} --days {args.days}`",
        f"- Data: {args.rows:,} idempotency records inserted with generate_series in {insert_s:.1f} s (~0.4 kB "
        f"answer each, ages spread over {args.days} days), VACUUM ANALYZE; table {before} before the prune, "
        f"{after} after it (the space is reused by new rows; VACUUM, not the prune, returns it).",
        "",
        f"{figure}.",
        "",
        "The prune runs daily from beat (`payments.tasks.idempotency_records_prune`, 03:47 UTC); each DELETE "
        "takes the oldest 5,000 due rows through the `created` index and commits on its own, so no statement "
        "holds locks for long and payments keep writing records meanwhile. Alert notifications and drill runs "
        "are pruned with the health history by the same helper (`config/retention.py`).",
    ])
    replace_section(REPO / "docs" / "benchmarks.md", SECTION, section, title="Benchmarks")


if __name__ == "__main__":
    main()
