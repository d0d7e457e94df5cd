"""The one table both baselines write, created by bench/fleet/load.py (no migrations)."""

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
