#!/bin/sh
# Snapshots of the session Redis, their retention, an optional copy to S3-compatible storage, and
# the restore (docs/redis.md, "Backups and restore"). The CronJob and the restore Job of this
# component run this file from a ConfigMap; the tests and the benchmark run the same file.
#
#   redis-backup.sh snapshot        one consistent RDB snapshot into BACKUP_DIR, verified
#   redis-backup.sh prune           keep the newest BACKUP_KEEP snapshots in BACKUP_DIR
#   redis-backup.sh upload          copy the newest snapshot to S3, keep the newest S3_KEEP there
#   redis-backup.sh restore [FILE]  make REDIS_DATA_DIR hold FILE (default: the newest snapshot),
#                                   with Redis stopped; what was there is moved aside, not deleted
#   redis-backup.sh list            the snapshots in BACKUP_DIR, newest first
#
# POSIX sh and the tools of coreutils, grep and sed: it runs in the Redis image (busybox) and in the
# AWS CLI image.
set -eu

: "${REDIS_HOST:=redis.voicepool.svc}"
: "${REDIS_PORT:=6379}"
: "${REDIS_PASSWORD_FILE:=/etc/redis/auth/password}"
# With the redis-tls component the CA is mounted here and Redis speaks only TLS.
: "${REDIS_CA_FILE:=/etc/redis/tls/ca.crt}"
: "${REDIS_DATA_DIR:=/data}"
: "${BACKUP_DIR:=/backups}"
: "${BACKUP_KEEP:=24}"
: "${S3_KEEP:=${BACKUP_KEEP}}"
: "${S3_SECRET_DIR:=/etc/redis-backup/s3}"
: "${RESTORE_SOCKET:=/tmp/redis-restore.sock}"
: "${RESTORE_TIMEOUT_S:=600}"

NAME_RE='^redis-[0-9]{8}T[0-9]{6}Z\.rdb$'

log() { printf '%s redis-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

positive() {
  case "$2" in
    '' | *[!0-9]* | 0*) die "$1 must be a whole number >= 1 without leading zeros, got '$2'" ;;
  esac
}

# redis-cli against the live Redis. The password goes through the environment (REDISCLI_AUTH),
# never the command line, where any process of the pod could read it.
cli() {
  if [ -s "$REDIS_CA_FILE" ]; then
    set -- --tls --cacert "$REDIS_CA_FILE" "$@"
  fi
  if [ -s "$REDIS_PASSWORD_FILE" ]; then
    REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"
  else
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"
  fi
}

# Snapshot names carry their UTC time, so name order is time order.
snapshots() {
  ls -1 "$BACKUP_DIR" 2> /dev/null | grep -E "$NAME_RE" | sort -r || true
}

newest() {
  found="$(snapshots | head -n 1)"
  [ -n "$found" ] || die "no snapshot in $BACKUP_DIR"
  printf '%s\n' "$found"
}

# A file redis-check-rdb reads to the end: no truncated or corrupt snapshot is ever kept or loaded.
verify() {
  if ! report="$(redis-check-rdb "$1" 2>&1)"; then
    printf '%s\n' "$report" >&2
    return 1
  fi
  case "$report" in
    *'RDB looks OK'*) ;;
    *)
      printf '%s\n' "$report" >&2
      return 1
      ;;
  esac
  printf '%s\n' "$report" | sed -n "s/.* \([0-9][0-9]*\) keys read.*/\1/p" | tail -n 1
}

snapshot() {
  mkdir -p "$BACKUP_DIR"
  name="redis-$(date -u +%Y%m%dT%H%M%SZ).rdb"
  final="$BACKUP_DIR/$name"
  [ ! -e "$final" ] || die "$name exists already (two snapshots in one second)"
  # Leftovers of an interrupted run are never complete snapshots.
  rm -f "$BACKUP_DIR"/*.partial
  part="$final.partial"
  # A full synchronisation as a replica would get it: Redis forks and streams one point-in-time RDB,
  # whatever its own persistence settings (the manifests' Redis keeps an AOF and no RDB).
  if ! out="$(cli --rdb "$part" 2>&1)"; then
    rm -f "$part"
    die "redis-cli --rdb from $REDIS_HOST:$REDIS_PORT failed: $out"
  fi
  if ! keys="$(verify "$part")"; then
    rm -f "$part"
    die "the snapshot from $REDIS_HOST:$REDIS_PORT does not verify"
  fi
  (cd "$BACKUP_DIR" && sha256sum "$name.partial" | sed 's/\.partial$//' > "$name.sha256")
  mv "$part" "$final"
  log "snapshot $name: $(wc -c < "$final" | tr -d ' ') bytes, ${keys:-0} keys"
  printf '%s\n' "$final"
}

prune() {
  positive BACKUP_KEEP "$BACKUP_KEEP"
  snapshots | tail -n "+$((BACKUP_KEEP + 1))" | while read -r old; do
    rm -f "$BACKUP_DIR/$old" "$BACKUP_DIR/$old.sha256"
    log "pruned $old"
  done
}

# A key of the mounted S3 Secret (docs/redis.md), empty when absent: files, not environment
# variables in the pod spec, as for the Redis password.
from_secret() {
  if [ -s "$S3_SECRET_DIR/$1" ]; then cat "$S3_SECRET_DIR/$1"; fi
}

upload() {
  positive S3_KEEP "$S3_KEEP"
  uri="${S3_URI:-$(from_secret uri)}"
  [ -n "$uri" ] || die "no S3 URI: set the key uri of the S3 Secret (s3://bucket/prefix)"
  uri="${uri%/}"
  endpoint="${S3_ENDPOINT:-$(from_secret endpoint)}"
  for pair in AWS_ACCESS_KEY_ID:access-key-id AWS_SECRET_ACCESS_KEY:secret-access-key \
    AWS_DEFAULT_REGION:region; do
    value="$(from_secret "${pair#*:}")"
    if [ -n "$value" ]; then export "${pair%%:*}=$value"; fi
  done
  set --
  if [ -n "$endpoint" ]; then
    set -- --endpoint-url "$endpoint"
  fi
  name="$(newest)"
  # The checksum first: a snapshot listed remotely always has its checksum beside it.
  aws "$@" s3 cp --only-show-errors "$BACKUP_DIR/$name.sha256" "$uri/$name.sha256"
  aws "$@" s3 cp --only-show-errors "$BACKUP_DIR/$name" "$uri/$name"
  log "uploaded $name to $uri"
  # Lines of `s3 ls` end with the object's name (no spaces in ours).
  aws "$@" s3 ls "$uri/" | sed 's/.* //' | grep -E "$NAME_RE" | sort -r | tail -n "+$((S3_KEEP + 1))" |
    while read -r old; do
      aws "$@" s3 rm --only-show-errors "$uri/$old"
      aws "$@" s3 rm --only-show-errors "$uri/$old.sha256"
      log "pruned $uri/$old"
    done
}

# Bounded poll of the restoring server (the script has no event to wait on).
wait_for() {
  what="$1"
  shift
  waited=0
  until "$@"; do
    waited=$((waited + 1))
    [ "$waited" -le $((RESTORE_TIMEOUT_S * 10)) ] || die "timed out waiting for $what"
    sleep 0.1
  done
}

local_cli() { redis-cli -s "$RESTORE_SOCKET" "$@"; }
answers() { [ "$(local_cli ping 2>/dev/null)" = PONG ]; }
rewritten() {
  info="$(local_cli info persistence | tr -d '\r')"
  case "$info" in *aof_rewrite_in_progress:0*) ;; *) return 1 ;; esac
  case "$info" in *aof_rewrite_scheduled:0*) ;; *) return 1 ;; esac
  case "$info" in *aof_enabled:1*) ;; *) return 1 ;; esac
  case "$info" in *aof_last_bgrewrite_status:ok*) return 0 ;; *) return 1 ;; esac
}

# Offline: Redis must be stopped (its StatefulSet scaled to 0). A throwaway redis-server on a unix
# socket loads the snapshot and writes it out as the append-only file the real server starts from
# (that server loads only its AOF, never an RDB file, when appendonly is on).
restore() {
  file="${1:-}"
  if [ -z "$file" ] || [ "$file" = latest ]; then
    file="$BACKUP_DIR/$(newest)"
  fi
  case "$file" in */*) ;; *) file="$BACKUP_DIR/$file" ;; esac
  [ -f "$file" ] || die "no snapshot $file"
  if [ -f "$file.sha256" ]; then
    (cd "$(dirname "$file")" && sha256sum -c "$(basename "$file").sha256" > /dev/null) ||
      die "$file does not match its checksum"
  fi
  keys="$(verify "$file")" || die "$file does not verify"
  [ -d "$REDIS_DATA_DIR" ] || die "no data directory $REDIS_DATA_DIR"
  [ ! -e "$RESTORE_SOCKET" ] || die "$RESTORE_SOCKET exists: is another restore running?"

  aside="$REDIS_DATA_DIR/pre-restore-$(date -u +%Y%m%dT%H%M%SZ)"
  for old in appendonlydir dump.rdb; do
    if [ -e "$REDIS_DATA_DIR/$old" ]; then
      mkdir -p "$aside"
      mv "$REDIS_DATA_DIR/$old" "$aside/"
    fi
  done
  [ ! -d "$aside" ] || log "the previous data is in $aside (delete it once the restore is checked)"

  cp "$file" "$REDIS_DATA_DIR/restore.rdb"
  redis-server --port 0 --unixsocket "$RESTORE_SOCKET" --unixsocketperm 700 \
    --dir "$REDIS_DATA_DIR" --dbfilename restore.rdb --appendonly no --save "" \
    --aof-use-rdb-preamble yes --maxmemory 0 --loglevel warning &
  pid=$!
  trap 'kill "$pid" 2> /dev/null || true' EXIT
  wait_for "the restoring redis-server to load $file" answers
  loaded="$(local_cli dbsize)"
  local_cli config set appendonly yes > /dev/null
  wait_for "the append-only file to be written" rewritten
  local_cli shutdown nosave > /dev/null 2>&1 || true
  wait "$pid" || true
  trap - EXIT
  rm -f "$REDIS_DATA_DIR/restore.rdb"
  [ -f "$REDIS_DATA_DIR/appendonlydir/appendonly.aof.manifest" ] || die "no append-only file was written"
  log "restored $(basename "$file") (${keys:-0} keys in the file, $loaded loaded) into $REDIS_DATA_DIR"
}

case "${1:-}" in
  snapshot) snapshot > /dev/null ;;
  prune) prune ;;
  upload) upload ;;
  restore) restore "${2:-}" ;;
  list) snapshots ;;
  *) die "usage: $0 snapshot|prune|upload|restore [FILE]|list" ;;
esac
