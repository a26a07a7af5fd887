"""Backup and restore of the session Redis at 10,000 sessions, with the backup component's own script.

One redis-server on loopback with AUTH and an AOF, as the manifests run it. Per run: the sessions
are written by the agents' store code (allocated and saved with a turn of history), the CronJob's
`redis-backup.sh snapshot` is timed, the data is lost, `redis-backup.sh restore` is timed (checksum
and RDB checks, load, the append-only file written), Redis is started on what the restore left, and
another agent's store code takes every session over (what a client's resume makes an agent do).
`python -m bench.backup [--sessions N] [--runs N]`; results in bench/results/backup.json,
docs/redis.md ("Backups and restore") shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import table, write
from tests.redis.backups import POOL, Backups, write_sessions
from tests.redis.servers import RedisServer
from voice_agent.store.redis import RedisSessionStore

PASSWORD = "bench-backup-password"


def log(msg: str) -> None:
    print(f"[bench.backup] {msg}", flush=True)


async def resumable(url: str, ids: list[str], concurrency: int = 64) -> int:
    """Sessions another agent's store code takes over from the restored data (claim + record)."""
    store = RedisSessionStore(
        url, POOL, "agent-after-restore", capacity=len(ids), max_connections=concurrency
    )
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    await store.heartbeat("http://127.0.0.1:9", 60_000, [])
    limit = asyncio.Semaphore(concurrency)

    async def one(sid: str) -> bool:
        async with limit:
            claim = await store.claim(sid)
            return claim.kind == "claimed" and claim.record is not None and len(claim.record.history) == 2

    try:
        return sum(await asyncio.gather(*(one(sid) for sid in ids)))
    finally:
        await inbox.aclose()  # type: ignore[no-untyped-call]
        await store.close()


def one_run(workdir: Path, sessions: int) -> dict[str, Any]:
    server = RedisServer(workdir / "redis", password=PASSWORD, aof=True).start()
    backups = Backups(server, workdir / "backups")
    try:
        started = time.perf_counter()
        ids = asyncio.run(write_sessions(server.url, sessions))
        write_s = time.perf_counter() - started
        used = int(server.client().info("memory")["used_memory_dataset"])

        started = time.perf_counter()
        backups.ok("snapshot")
        snapshot_s = time.perf_counter() - started
        [name] = backups.snapshots()
        size = (backups.directory / name).stat().st_size

        server.stop()
        shutil.rmtree(server.workdir)
        server.workdir.mkdir()
        started = time.perf_counter()
        backups.ok("restore")
        restore_s = time.perf_counter() - started

        started = time.perf_counter()
        server.start(timeout=120)
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        taken = asyncio.run(resumable(server.url, ids))
        claim_s = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "sessions": sessions,
        "dataset_mb": round(used / 2**20, 2),
        "rdb_mb": round(size / 2**20, 2),
        "write_s": round(write_s, 3),
        "snapshot_s": round(snapshot_s, 3),
        "restore_s": round(restore_s, 3),
        "redis_start_s": round(start_s, 3),
        "takeover_all_s": round(claim_s, 3),
        "resumable": taken,
        "missing": sessions - taken,
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in runs), 3)


def report(d: dict[str, Any]) -> str:
    """The table docs/redis.md shows (bench.report writes it from the results file)."""
    n, runs = d["sessions"], d["runs"]
    each = f"median of {len(runs)} runs" if len(runs) > 1 else "one run"
    rows = [
        (f"Sessions written (store code, one turn of history each), {n:,}", f"{d['write_s']} s", "—"),
        ("Their RDB snapshot / Redis' dataset", f"{d['rdb_mb']} MB / {d['dataset_mb']} MB", "—"),
        (
            f"Backup: `redis-backup.sh snapshot` (`redis-cli --rdb`, verified), {each}",
            f"{d['snapshot_s']} s",
            "measured",
        ),
        (
            f"Restore: `redis-backup.sh restore` (checks, load, AOF written), {each}",
            f"{d['restore_s']} s",
            "measured",
        ),
        ("Redis start on the restored AOF", f"{d['redis_start_s']} s", "—"),
        (f"Every session taken over by another agent's store code, {each}", f"{d['takeover_all_s']} s", "—"),
        ("Sessions resumable after the restore, every run", f"{d['resumable_min']:,} of {n:,}", "all"),
    ]
    return table(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
            run = one_run(Path(tmp), args.sessions)
        log(f"run {i + 1}: {run}")
        runs.append(run)
    keys = ("write_s", "snapshot_s", "restore_s", "redis_start_s", "takeover_all_s", "rdb_mb", "dataset_mb")
    data: dict[str, Any] = {
        "sessions": args.sessions,
        **{k: median(runs, k) for k in keys},
        "resumable_min": min(r["resumable"] for r in runs),
        "missing": max(r["missing"] for r in runs),
        "runs": runs,
    }
    path = write("backup", data)
    print(report(data))
    log(f"wrote {path}")
    return 0 if data["missing"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
