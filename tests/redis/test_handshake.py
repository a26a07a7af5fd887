"""The agent's Redis connections open with a handshake every supported server accepts.

redis-py would add CLIENT SETINFO (Redis 7.2+) and CLIENT MAINT_NOTIFICATIONS (managed clouds) to
each connection's handshake; an older server answers them with errors. SETINFO's error is read late
(pipelined), and a loaded agent whose loop stalled mid-handshake read it as the answer to a
health-check PING: a session's save failed with "unknown subcommand 'SETINFO'" (store/redis_url.py).
The server's own error count shows whether any connection still sends something it refuses.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.redis.servers import redis_server
from voice_agent.protocol.sessions import SessionRecord
from voice_agent.store.redis import RedisSessionStore, check_url
from voice_agent.store.redis_url import close_sync_client, sync_client

pytestmark = pytest.mark.xdist_group("redis-handshake")

POOL = "hs"


async def test_no_connection_of_the_store_draws_an_error_from_the_server(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        admin = sync_client(server.url, 2.0)
        admin.config_resetstat()  # after the fixture's own readiness client, which is redis-py's default
        store = RedisSessionStore(server.url, POOL, "a1", 2, max_connections=4)
        inbox = store.pubsub()
        lease = store.lease(3000)
        try:
            await store.heartbeat("http://a1", 3000, [])
            await inbox.subscribe(store.inbox)
            lease.renew()
            record = SessionRecord.new(secrets.token_urlsafe(8), 60, "", POOL)
            assert await store.allocate(record) == "a1"
            await store.save(record)
            assert (await store.get(record.id)) is not None
            assert check_url(server.url) is None
        finally:
            await inbox.aclose()  # type: ignore[no-untyped-call]
            lease.close()
            await store.close()
        errors = admin.info("errorstats")
        version = admin.info("server")["redis_version"]
        close_sync_client(admin)
    # A script's first EVALSHA on a server is answered NOSCRIPT and the script is loaded: expected.
    refused = {kind: n for kind, n in errors.items() if kind != "errorstat_NOSCRIPT"}
    assert not refused, f"redis {version} refused: {refused}"
