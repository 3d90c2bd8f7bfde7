#!/usr/bin/env bash
# Makes sure a local 3-master Redis Cluster answers on 127.0.0.1:7000-7002
# (the Redis Cluster tests, tests/redis_cluster.rs, run against it),
# starting one with Debian's redis-server (--cluster-enabled yes) and
# `redis-cli --cluster create` if none does. Nodes keep nothing on disk but
# their cluster config, under ${REDIS_CLUSTER_DIR:-/tmp/commerce-redis-cluster}.
# Exits non-zero, saying why, if the cluster cannot be brought up.
#
#   scripts/redis-cluster.sh         start it (or find it running)
#   scripts/redis-cluster.sh stop    shut its nodes down
set -euo pipefail

PORTS=(7000 7001 7002)
DIR="${REDIS_CLUSTER_DIR:-/tmp/commerce-redis-cluster}"

cluster_ok() {
  redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' &&
    [ "$(redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" = "${#PORTS[@]}" ]
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "error: redis-server and redis-cli are needed for the Redis Cluster tests (Debian: apt-get install redis-server)" >&2
  exit 1
fi

if [ "${1:-}" = stop ]; then
  for port in "${PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$DIR"
  exit 0
fi

if cluster_ok; then
  exit 0
fi

echo "starting a local Redis Cluster on 127.0.0.1:${PORTS[0]}-${PORTS[-1]}..." >&2
# A half-made cluster from an earlier run: start over.
for port in "${PORTS[@]}"; do
  redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
done
rm -rf "$DIR"
mkdir -p "$DIR"
for port in "${PORTS[@]}"; do
  mkdir -p "$DIR/$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
    --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" \
    --cluster-node-timeout 5000 --dir "$DIR/$port" --save "" --appendonly no \
    --logfile "$DIR/$port/redis.log"
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
done
nodes=()
for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes </dev/null >"$DIR/create.log" 2>&1 || {
  echo "error: redis-cli --cluster create failed:" >&2
  cat "$DIR/create.log" >&2
  exit 1
}
for _ in $(seq 1 100); do
  if cluster_ok; then
    echo "Redis Cluster up: redis://127.0.0.1:${PORTS[0]},redis://127.0.0.1:${PORTS[1]},redis://127.0.0.1:${PORTS[2]}" >&2
    exit 0
  fi
  sleep 0.1
done
echo "error: the local Redis Cluster did not reach cluster_state:ok; see $DIR/*/redis.log" >&2
exit 1
