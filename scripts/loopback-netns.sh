#!/usr/bin/env bash
# Run a command in a fresh network namespace whose only interface is loopback.
#
# The browser end-to-end tests run inside one: Chromium offers a host candidate on every interface
# it sees and, as the controlling ICE agent, may pick its external address to reach the agent's
# loopback candidate. With loopback the only interface, every media packet stays on 127.0.0.1 by
# construction. Needs root, or unprivileged user namespaces (then --map-root-user is used).
set -euo pipefail

if [[ "${VOICEPOOL_LOOPBACK_NETNS:-}" == "inside" ]]; then
  if command -v ip >/dev/null; then
    ip link set lo up
  else  # no iproute2: raise IFF_UP on lo with one ioctl
    python3 - <<'PY'
import fcntl, socket, struct
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
PY
  fi
  exec "$@"
fi

[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
command -v unshare >/dev/null || { echo "$0: unshare not found (apt-get install util-linux)" >&2; exit 1; }
flags=(--net)
[[ $(id -u) -eq 0 ]] || flags+=(--map-root-user)
if ! unshare "${flags[@]}" true 2>/dev/null; then
  echo "$0: cannot create a network namespace (run as root, or enable unprivileged user namespaces)" >&2
  exit 1
fi
VOICEPOOL_LOOPBACK_NETNS=inside exec unshare "${flags[@]}" "$0" "$@"
