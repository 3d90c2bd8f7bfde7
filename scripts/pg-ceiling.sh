#!/usr/bin/env bash
# What PostgreSQL alone can durably write on this machine for the service's
# order write shape (an event appended, a stock row updated, a read-model
# row inserted per order; scripts/ceiling/), measured with pgbench in a
# scratch database: one order per transaction, and fifty per transaction
# (as the service's group commit batches them under load). The second is
# the ceiling that `commerce bench --ceiling N` compares a run with.
#
#   scripts/pg-ceiling.sh                     # 20 s each, 32 clients
#   CEILING_SECS=60 CEILING_CLIENTS=64 scripts/pg-ceiling.sh
#
# Uses CEILING_DATABASE_URL's server (default: the test server,
# postgres://postgres@127.0.0.1:5432), creating and dropping the database
# `commerce_ceiling`. Run it on a quiet machine, back to back with the
# bench you compare it with: machines of one class differ about 2x.
set -euo pipefail
cd "$(dirname "$0")"
SERVER=${CEILING_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
SECS=${CEILING_SECS:-20}
CLIENTS=${CEILING_CLIENTS:-32}
DB=commerce_ceiling
psql -q "$SERVER/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'psql -q "$SERVER/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
psql -q "$SERVER/$DB" -f ceiling/schema.sql
fsync=$(psql -tA "$SERVER/$DB" -c "SHOW fsync")
sync_commit=$(psql -tA "$SERVER/$DB" -c "SHOW synchronous_commit")
echo "PostgreSQL $(psql -tA "$SERVER/$DB" -c 'SHOW server_version'), fsync=$fsync, synchronous_commit=$sync_commit, $(nproc) cores, $CLIENTS clients, $SECS s each"

tps() {
  pgbench -n -M prepared -c "$CLIENTS" -j "$(nproc)" -T "$SECS" -f "$1" "$SERVER/$DB" 2>&1 \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
single=$(tps ceiling/order.sql)
batched=$(tps ceiling/batch50.sql)
orders=$(python3 -c "print(round(float('$batched') * 50))")
echo "one order per transaction:    $(python3 -c "print(round(float('$single')))") orders/s"
echo "fifty orders per transaction: $orders orders/s"
echo "ceiling: $orders orders/s (compare: commerce bench ... --ceiling $orders)"
