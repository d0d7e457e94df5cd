"""The tables the baselines write, created by bench/fleet/load.py (no migrations)."""

TABLE = "bench_charge"
TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    gateway_id varchar(64) NOT NULL,
    amount integer NOT NULL,
    currency varchar(3) NOT NULL,
    status varchar(32) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)"""

# The recorded floor's payments: written before the gateway call, under a unique key.
RECORDED_TABLE = "bench_recorded_charge"
RECORDED_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {RECORDED_TABLE} (
    id bigserial PRIMARY KEY,
    idempotency_key varchar(255) NOT NULL UNIQUE,
    gateway_id varchar(64),
    amount integer NOT NULL,
    currency varchar(3) NOT NULL,
    status varchar(32) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
