#!/usr/bin/env bash
# Installs the Debian packages the project runs against, only when missing, so `make run` and
# `make test` work on a machine that starts with just Python 3.11, Node 20 and apt.
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
for profile in "$@"; do
  case "$profile" in
    run)  need flite flite ;;
    test) need flite flite; need redis-server redis-server; need turnserver coturn; need openssl openssl
          need chromium chromium; need sox sox; need promtool prometheus
          need busybox busybox ;;
    *) echo "ensure-system-deps: unknown profile '$profile'" >&2; exit 2 ;;
  esac
done
[ ${#want[@]} -eq 0 ] && exit 0
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
echo "==> installing system packages: ${want[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
