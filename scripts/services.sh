#!/usr/bin/env bash
# Makes sure the local PostgreSQL (127.0.0.1:5432, database `test`),
# Redis (127.0.0.1:6379) and a 3-master Redis Cluster (127.0.0.1:7000-7002,
# scripts/redis-cluster.sh) answer, starting them if they are installed but
# down. Exits non-zero, saying why, if one cannot be reached.
set -euo pipefail

PGURL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $name is not reachable; the tests need it" >&2
  return 1
}

pg_answers() {
  if command -v psql >/dev/null 2>&1; then
    psql "$PGURL" -Atc 'select 1'
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432)
  fi
}
redis_answers() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379)
  fi
}

if ! pg_answers >/dev/null 2>&1; then
  if [ -z "${TEST_DATABASE_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL..." >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for "PostgreSQL at $PGURL" pg_answers
fi

if ! redis_answers >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis..." >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" || true
  fi
  wait_for "Redis at 127.0.0.1:6379" redis_answers
fi

# The local 3-master Redis Cluster (127.0.0.1:7000-7002) that the Redis
# Cluster tests (tests/redis_cluster.rs) run against.
if [ -z "${TEST_REDIS_CLUSTER_URL:-}" ]; then
  "$(dirname "$0")/redis-cluster.sh"
fi
