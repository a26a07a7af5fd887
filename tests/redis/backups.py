"""The backup component's script run as the CronJob and the restore Job run it, and sessions written
the way agents write them: shared by tests/redis/test_backup.py and bench/backup.py.

The script is the very file the component mounts from its ConfigMap
(manifests/components/redis-backup/redis-backup.sh); its environment here names local paths where
the pods have mounts. docs/redis.md, "Backups and restore".
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.redis.servers import RedisServer
from tests.support.procs import ROOT
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.store.redis import RedisSessionStore

SCRIPT = ROOT / "manifests" / "components" / "redis-backup" / "redis-backup.sh"
# The pool agents join when they are given none (what the test agents run as).
POOL = "default"
WRITER = "writer-before-the-loss"
# Generous: a restore of the benchmark's 10,000 sessions on a loaded machine.
SCRIPT_TIMEOUT_S = 300.0


@dataclass
class Backups:
    """Where one Redis' snapshots go, and the script's environment for it (the pod's mounts)."""

    server: RedisServer
    directory: Path
    # The pods run the script with the image's shell: busybox in the Redis image.
    shell: str = "sh"

    def env(self, **extra: str) -> dict[str, str]:
        secrets = self.directory.parent / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        password = secrets / "password"
        password.write_text(self.server.password or "")
        env = {
            "PATH": os.environ["PATH"],
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.server.port),
            "REDIS_PASSWORD_FILE": str(password),
            "REDIS_CA_FILE": str(self.server.tls.ca) if self.server.tls else str(secrets / "no-ca"),
            "REDIS_DATA_DIR": str(self.server.workdir),
            "BACKUP_DIR": str(self.directory),
            "RESTORE_SOCKET": str(secrets / "restore.sock"),
        }
        return {**env, **extra}

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """The script as a pod runs it (`sh redis-backup.sh ...`); the caller checks the outcome."""
        return subprocess.run(
            [self.shell, str(SCRIPT), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, **extra)
        assert done.returncode == 0, f"redis-backup.sh {' '.join(args)}: {done.stderr}"
        return done

    def snapshots(self) -> list[str]:
        """Newest first, as the script lists them."""
        return self.ok("list").stdout.split()


def busybox_path(directory: Path) -> str:
    """A PATH like the Redis image's: busybox applets for every tool the script uses, Redis' own
    binaries beside them, nothing else."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox not found: apt-get install busybox (scripts/ensure-system-deps.sh test)")
    directory.mkdir(parents=True, exist_ok=True)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (directory / applet).symlink_to(busybox)
    for binary in ("redis-cli", "redis-server", "redis-check-rdb"):
        found = shutil.which(binary)
        assert found is not None, binary
        (directory / binary).symlink_to(found)
    return str(directory)


def conversation(i: int) -> list[Message]:
    return [
        Message(role="user", content=f"remember the number {i}"),
        Message(role="assistant", content=f"I will remember {i}."),
    ]


async def write_sessions(url: str, count: int, ttl_s: int = 3600, concurrency: int = 64) -> list[str]:
    """`count` sessions allocated and saved with a turn of history by one agent's store code.

    The writer is registered and listening, as a live agent is, while it writes; afterwards it is
    gone, so any agent may take its sessions over.
    """
    store = RedisSessionStore(url, POOL, WRITER, capacity=count, max_connections=concurrency)
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    await store.heartbeat("http://127.0.0.1:9", 60_000, [])
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with limit:
            record = SessionRecord.new(f"restored-{i:05d}", ttl_s, "", POOL)
            owner = await store.allocate(record)
            assert owner == WRITER, owner
            record.owner = WRITER
            record.history = conversation(i)
            await store.save(record)
            return record.id

    try:
        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        await inbox.aclose()  # type: ignore[no-untyped-call]
        await store.close()
