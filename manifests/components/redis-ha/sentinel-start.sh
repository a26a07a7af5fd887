#!/bin/sh
# Starts one Sentinel. Sentinels rewrite their config as the group changes, so it lives on the
# pod's writable volume; the first start writes it from the password and the group's first primary.
set -eu
PASSWORD="$(cat "${REDIS_PASSWORD_FILE:-/etc/redis/auth/password}")"
CONF="${SENTINEL_CONF:-/data/sentinel.conf}"
SELF="$(hostname).redis-sentinel-headless.${POD_NAMESPACE}.svc.cluster.local"
if [ ! -s "$CONF" ]; then
  cat > "$CONF" <<CONF
port 26379
bind 0.0.0.0
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SELF
requirepass $PASSWORD
sentinel sentinel-pass $PASSWORD
sentinel monitor voicepool redis-0.redis-headless.${POD_NAMESPACE}.svc.cluster.local 6379 2
sentinel auth-pass voicepool $PASSWORD
sentinel down-after-milliseconds voicepool 5000
sentinel failover-timeout voicepool 60000
sentinel parallel-syncs voicepool 1
CONF
fi
exec redis-server "$CONF" --sentinel
