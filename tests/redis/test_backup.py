"""Backups and restore with the component's own script and a real redis-server (docs/redis.md,
"Backups and restore"): sessions written by the agents' store code are snapshotted, the data is
lost, the snapshot restored, and a real agent resumes a session from it; every bad input is refused
with a clear error and loses nothing."""

from __future__ import annotations

import hashlib
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis.backups import POOL, Backups, busybox_path, conversation, write_sessions
from tests.redis.servers import RedisServer, client_at, make_tls, redis_server, start_agents, stop_all
from voice_agent.store import keys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-backup")]

PASSWORD = "backup-test-password"


@pytest.fixture
def backups(tmp_path: Path) -> Iterator[Backups]:
    with redis_server(tmp_path / "redis", password=PASSWORD, aof=True) as server:
        yield Backups(server, tmp_path / "backups")


def lose_everything(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir)
    server.workdir.mkdir()


@pytest.mark.parametrize("tls", [False, True], ids=["auth", "auth+tls"])
async def test_snapshot_lose_restore_and_an_agent_resumes_a_session(tmp_path: Path, tls: bool) -> None:
    tls_files = make_tls(tmp_path / "tls") if tls else None
    with redis_server(tmp_path / "redis", password=PASSWORD, aof=True, tls=tls_files) as server:
        backups = Backups(server, tmp_path / "backups")
        ids = await write_sessions(server.url, 20)
        backups.ok("snapshot")
        [snapshot] = backups.snapshots()
        data = (backups.directory / snapshot).read_bytes()
        checksum = (backups.directory / f"{snapshot}.sha256").read_text().split()
        assert checksum == [hashlib.sha256(data).hexdigest(), snapshot]

        lose_everything(server)
        done = backups.ok("restore")
        assert f"restored {snapshot}" in done.stderr
        assert not (server.workdir / "restore.rdb").exists()
        server.start()  # the production settings: it loads its append-only file, nothing else
        client = server.client()
        assert all(client.exists(keys.session_key(POOL, sid)) for sid in ids)

        agents = start_agents(tmp_path, server, 1, prefix="after-restore")
        resumed = client_at(agents[0], {"id": ids[7]})
        try:
            await resumed.connect(negotiate=False)
            event = await resumed.wait_for(lambda e: e["type"] == "session", timeout=10)
            record = event["session"]
            assert record["owner"] != "" and record["id"] == ids[7]
            expected = [m.model_dump() for m in conversation(7)]
            assert [{k: m[k] for k in expected[0]} for m in record["history"]] == expected
            await resumed.send({"type": "text", "text": "which number did I ask you to remember"})
            await resumed.wait_for(lambda e: e["type"] == "ai_response" and e["final"], timeout=30)
        finally:
            await resumed.close()
            stop_all(agents)
        assert client.hget(keys.session_key(POOL, ids[7]), "epoch") == "2", "taken over once"


async def test_the_script_runs_in_busybox_as_in_the_redis_image(backups: Backups, tmp_path: Path) -> None:
    """Snapshot, prune and restore with busybox's shell and tools only (the pods' alpine image)."""
    path = busybox_path(tmp_path / "busybox")
    box = Backups(backups.server, backups.directory, shell=f"{path}/sh")
    ids = await write_sessions(box.server.url, 5)
    box.ok("snapshot", PATH=path)
    box.ok("prune", PATH=path, BACKUP_KEEP="1")
    assert box.ok("list", PATH=path).stdout.split() == [p.name for p in box.directory.glob("*.rdb")]
    lose_everything(box.server)
    box.ok("restore", PATH=path)
    box.server.start()
    assert all(box.server.client().exists(keys.session_key(POOL, sid)) for sid in ids)


def test_prune_keeps_the_newest(backups: Backups) -> None:
    backups.directory.mkdir(parents=True)
    names = [f"redis-2026010{d}T000000Z.rdb" for d in range(1, 6)]
    for name in names:
        (backups.directory / name).write_text("x")
        (backups.directory / f"{name}.sha256").write_text("x")
    (backups.directory / "notes.txt").write_text("not a snapshot")
    backups.ok("prune", BACKUP_KEEP="2")
    assert sorted(p.name for p in backups.directory.iterdir()) == sorted(
        [*names[-2:], *(f"{n}.sha256" for n in names[-2:]), "notes.txt"]
    )


@pytest.mark.parametrize("keep", ["0", "00", "07", "-1", "two", "1.5"])
def test_prune_refuses_a_bad_count(backups: Backups, keep: str) -> None:
    backups.directory.mkdir(parents=True)
    (backups.directory / "redis-20260101T000000Z.rdb").write_text("x")
    done = backups.run("prune", BACKUP_KEEP=keep)
    assert done.returncode == 1
    assert "BACKUP_KEEP must be a whole number >= 1" in done.stderr
    assert [p.name for p in backups.directory.iterdir()] == ["redis-20260101T000000Z.rdb"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"REDIS_PASSWORD_FILE": "/nonexistent"}, "redis-cli --rdb from 127.0.0.1"),
        ({"REDIS_PORT": "1"}, "redis-cli --rdb from 127.0.0.1:1 failed"),
    ],
    ids=["no-password", "unreachable"],
)
def test_a_failed_snapshot_fails_the_job_and_leaves_no_file(
    backups: Backups, change: dict[str, str], error: str
) -> None:
    done = backups.run("snapshot", **change)
    assert done.returncode == 1
    assert error in done.stderr
    assert PASSWORD not in done.stderr
    assert list(backups.directory.iterdir()) == []


async def test_restore_refuses_a_damaged_snapshot_and_keeps_the_data(backups: Backups) -> None:
    await write_sessions(backups.server.url, 3)
    backups.ok("snapshot")
    [snapshot] = backups.snapshots()
    path = backups.directory / snapshot
    backups.server.stop()
    before = sorted(p.name for p in backups.server.workdir.rglob("*"))

    path.write_bytes(path.read_bytes()[:-20])
    done = backups.run("restore")
    assert (done.returncode, "does not match its checksum" in done.stderr) == (1, True)
    (backups.directory / f"{snapshot}.sha256").unlink()  # without a checksum: the RDB check
    done = backups.run("restore", snapshot)
    assert (done.returncode, "does not verify" in done.stderr) == (1, True)
    assert sorted(p.name for p in backups.server.workdir.rglob("*")) == before


def test_restore_without_a_snapshot_says_so(backups: Backups) -> None:
    backups.directory.mkdir(parents=True)
    backups.server.stop()
    for args in ((), ("redis-20260101T000000Z.rdb",)):
        done = backups.run("restore", *args)
        assert done.returncode == 1
        assert "no snapshot" in done.stderr


async def test_restore_moves_the_previous_data_aside(backups: Backups) -> None:
    await write_sessions(backups.server.url, 2)
    backups.ok("snapshot")
    backups.server.stop()
    backups.ok("restore")
    [aside] = backups.server.workdir.glob("pre-restore-*")
    assert (aside / "appendonlydir").is_dir()
    backups.server.start()
    assert backups.server.client().exists(keys.session_key(POOL, "restored-00001"))


def test_upload_copies_the_newest_and_keeps_s3_keep_there(backups: Backups, tmp_path: Path) -> None:
    """The AWS CLI stood in by a recorder: what the upload step asks of S3, in order, with the
    settings and credentials read from the mounted Secret's files."""
    backups.directory.mkdir(parents=True)
    names = [f"redis-2026010{d}T000000Z.rdb" for d in range(1, 5)]
    for name in names:
        (backups.directory / name).write_text("x")
        (backups.directory / f"{name}.sha256").write_text("x")
    uri, endpoint = "s3://bucket/voicepool/", "https://s3.example.test"
    secret = tmp_path / "s3-secret"
    secret.mkdir()
    for key, value in {
        "uri": uri,
        "endpoint": endpoint,
        "access-key-id": "AKID",
        "secret-access-key": "SAK",
    }.items():
        (secret / key).write_text(value)
    bin_dir, calls = tmp_path / "bin", tmp_path / "aws-calls"
    bin_dir.mkdir()
    listing = "\n".join(f"2026-01-0{i + 1} 00:00:00   1 {n}" for i, n in enumerate(names))
    fake = bin_dir / "aws"
    fake.write_text(
        f'#!/bin/sh\necho "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY $*" >> {calls}\n'
        f'case "$*" in *" s3 ls "*) printf "%s\\n" "{listing}" ;; esac\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    path = f"{bin_dir}:{backups.env()['PATH']}"
    done = backups.ok("upload", PATH=path, S3_SECRET_DIR=str(secret), S3_KEEP="2")
    assert "SAK" not in done.stderr
    e = f"AKID/SAK --endpoint-url {endpoint} s3"
    newest, base = names[-1], uri.rstrip("/")
    assert calls.read_text().splitlines() == [
        f"{e} cp --only-show-errors {backups.directory}/{newest}.sha256 {base}/{newest}.sha256",
        f"{e} cp --only-show-errors {backups.directory}/{newest} {base}/{newest}",
        f"{e} ls {base}/",
        f"{e} rm --only-show-errors {base}/{names[1]}",
        f"{e} rm --only-show-errors {base}/{names[1]}.sha256",
        f"{e} rm --only-show-errors {base}/{names[0]}",
        f"{e} rm --only-show-errors {base}/{names[0]}.sha256",
    ]
    (secret / "uri").unlink()
    missing = backups.run("upload", PATH=path, S3_SECRET_DIR=str(secret))
    assert (missing.returncode, "no S3 URI" in missing.stderr) == (1, True)


def test_an_unknown_command_prints_the_usage(backups: Backups) -> None:
    done = backups.run("backup")
    assert done.returncode == 1
    assert "usage:" in done.stderr
