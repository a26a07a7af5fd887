#!/bin/sh
# Starts one Redis of the replicated group. A pod starts as a replica of the primary the Sentinels
# name; only when no Sentinel answers (the group's first start) does redis-0 start as the primary.
# A former primary that restarts thus rejoins as a replica instead of serving stale data.
set -eu
PASSWORD="$(cat "${REDIS_PASSWORD_FILE:-/etc/redis/auth/password}")"
SELF="$(hostname).redis-headless.${POD_NAMESPACE}.svc.cluster.local"
SENTINELS="redis-sentinel.${POD_NAMESPACE}.svc.cluster.local"
answer=""
for _ in 1 2 3; do
  answer="$(REDISCLI_AUTH="$PASSWORD" timeout 3 redis-cli -h "$SENTINELS" -p 26379 \
    sentinel get-master-addr-by-name voicepool 2>/dev/null || true)"
  [ -n "$answer" ] && break
  sleep 1
done
primary="$(echo "$answer" | sed -n 1p)"
port="$(echo "$answer" | sed -n 2p)"
if [ -z "$primary" ]; then
  primary="redis-0.redis-headless.${POD_NAMESPACE}.svc.cluster.local"
fi
set -- /etc/redis/redis.conf --requirepass "$PASSWORD" --masterauth "$PASSWORD" \
  --replica-announce-ip "$SELF" --min-replicas-to-write 1 --min-replicas-max-lag 10
if [ "$primary" != "$SELF" ]; then
  set -- "$@" --replicaof "$primary" "${port:-6379}"
fi
exec redis-server "$@"
