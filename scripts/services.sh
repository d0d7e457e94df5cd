#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on loopback (starting them when installed but
# stopped) and that the databases exist. Says plainly what is missing.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}; PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER

wait_for() {  # name, command
  for _ in $(seq 1 30); do eval "$2" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "!! $1 did not come up" >&2; return 1
}

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    wait_for PostgreSQL "pg_isready -q -h $PGHOST -p $PGPORT"
  else
    echo "!! PostgreSQL is not running on $PGHOST:$PGPORT and is not installed here." >&2
    echo "   Install it (apt-get install postgresql) or point DATABASE_URL at a server." >&2
    exit 1
  fi
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis "redis-cli -h 127.0.0.1 -p 6379 ping"
  else
    echo "!! Redis is not running on 127.0.0.1:6379 and is not installed here (apt-get install redis-server)." >&2
    exit 1
  fi
fi

for db in "$@"; do
  if ! psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    echo "==> creating database $db"
    createdb "$db"
  fi
done
