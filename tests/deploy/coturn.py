"""coturn (Debian's `turnserver`) on loopback with static long-term credentials, for relay-only ICE.

The server listens and relays on 127.0.0.1 only; loopback peers must be allowed explicitly because
both call legs' relayed addresses are on 127.0.0.1 (never do that in production: see
manifests/base/turn). Readiness is a real STUN Binding round trip, polled up to a deadline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUN_MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ALLOCATE_REQUEST = 0x0003
ATTR_REQUESTED_TRANSPORT = 0x0019
ATTR_ERROR_CODE = 0x0009


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stun_request(
    port: int, msg_type: int, attrs: bytes = b"", timeout: float = 0.2
) -> tuple[int, bytes] | None:
    """One STUN request to 127.0.0.1:port -> (response type, attributes), None without an answer."""
    txid = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(struct.pack("!HHI", msg_type, len(attrs), STUN_MAGIC) + txid + attrs, ("127.0.0.1", port))
        try:
            data = s.recv(2048)
        except OSError:
            return None
    if len(data) < 20 or data[8:20] != txid:
        return None
    return struct.unpack("!H", data[:2])[0], data[20:]


def stun_binding_ok(port: int) -> bool:
    answer = stun_request(port, BINDING_REQUEST)
    return answer is not None and answer[0] == BINDING_SUCCESS


def allocate_error_code(port: int) -> int | None:
    """Allocate a UDP relay without credentials; the ERROR-CODE of the answer (None if it succeeded)."""
    requested_transport_udp = struct.pack("!HHB3x", ATTR_REQUESTED_TRANSPORT, 4, 17)
    answer = stun_request(port, ALLOCATE_REQUEST, requested_transport_udp, timeout=5.0)
    if answer is None:
        raise TimeoutError(f"no answer to Allocate from 127.0.0.1:{port}")
    attrs = answer[1]
    while len(attrs) >= 4:
        kind, length = struct.unpack("!HH", attrs[:4])
        if kind == ATTR_ERROR_CODE:
            value = attrs[4 : 4 + length]
            return int(value[2] & 0x07) * 100 + int(value[3])
        attrs = attrs[4 + length + (-length % 4) :]
    return None


@dataclass(frozen=True)
class TurnServer:
    port: int
    username: str
    credential: str
    log_path: Path

    def ice_servers(self) -> list[dict[str, Any]]:
        """What a VoiceAgentPool's spec.ice.turn renders into VOICE_ICE_SERVERS (credentials filled)."""
        return [
            {
                "urls": [f"turn:127.0.0.1:{self.port}?transport=udp"],
                "username": self.username,
                "credential": self.credential,
            }
        ]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def turnserver_args(port: int, user: str, credential: str, workdir: Path, relay_ports: range) -> list[str]:
    return [
        "turnserver",
        "-n",  # no config file: every setting is on this command line
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={relay_ports.start}",
        f"--max-port={relay_ports.stop - 1}",
        "--lt-cred-mech",
        f"--user={user}:{credential}",
        "--realm=voicepool.test",
        "--allow-loopback-peers",
        "--no-tcp",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-software-attribute",
        "--fingerprint",
        "--simple-log",
        "--log-file=stdout",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
    ]


def config_file_args(config: Path, port: int, user: str, credential: str, workdir: Path) -> list[str]:
    """The deployment's turnserver.conf as is, with only the addresses, paths and user of this host."""
    return [
        "turnserver",
        "-c",
        str(config),
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--user={user}:{credential}",  # as manifests/base/turn/deployment.yaml passes it
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
    ]


@contextlib.contextmanager
def running_turnserver(
    workdir: Path, config: Path | None = None, timeout: float = 15.0
) -> Iterator[TurnServer]:
    """coturn on 127.0.0.1: the test settings of turnserver_args, or `config` (a turnserver.conf)."""
    if shutil.which("turnserver") is None:
        raise RuntimeError(
            "turnserver not found: apt-get install coturn (scripts/ensure-system-deps.sh test)"
        )
    port = free_udp_port()
    server = TurnServer(port, "voice", secrets.token_urlsafe(16), workdir / f"turnserver-{port}.log")
    if config is None:
        # A per-process window of relay ports; coturn skips ports that are taken, so overlap is harmless.
        base = 40000 + (os.getpid() % 40) * 500
        args = turnserver_args(port, server.username, server.credential, workdir, range(base, base + 500))
    else:
        args = config_file_args(config, port, server.username, server.credential, workdir)
    with open(server.log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not stun_binding_ok(port):
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {proc.returncode}:\n{server.logs()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"turnserver did not answer STUN on 127.0.0.1:{port} within {timeout}s")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
