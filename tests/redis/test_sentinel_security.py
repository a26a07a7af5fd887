"""The same ACL and TLS through Sentinels as with one server (docs/redis.md, "Connection"): a TLS-only group
(servers, replication and Sentinels), passwords on the servers and the Sentinels, the least-privilege ACL
user, its writes acknowledged by a replica, and the store following a failover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError

from tests.redis.sentinels import sentinel_group
from tests.redis.servers import make_tls
from tests.redis.test_security import AGENT_CATEGORIES
from tests.support.waits import until
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.store.base import StoreUnavailable
from voice_agent.store.redis import RedisSessionStore, check_url

pytestmark = [pytest.mark.xdist_group("redis-sentinel-tls")]

PASSWORD = "group-pw-7f3a"
AGENT_PASSWORD = "agent-pw-91c2"


async def registered(store: RedisSessionStore) -> Any:
    """What a running agent keeps in Redis for allocation to pick it: its inbox heard, its heartbeat."""
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    await store.heartbeat("http://sec-0", 60_000, [])
    return inbox


async def test_tls_acl_user_and_sentinel_passwords_through_a_failover(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "pki")
    other_ca = make_tls(tmp_path / "other-pki").ca
    with sentinel_group(tmp_path / "redis", password=PASSWORD, tls=tls) as group:
        assert group.url.startswith("rediss+sentinel://")
        # ACL SETUSER is not replicated: every server of the group gets the user (docs/redis.md).
        for server in (group.primary, *group.replica_servers):
            server.client().acl_setuser(
                "voicepool",
                enabled=True,
                reset=True,
                passwords=[f"+{AGENT_PASSWORD}"],
                keys=["vp:*"],
                channels=["vp:*"],
                categories=AGENT_CATEGORIES,
            )
        url = group.url.replace(f":{PASSWORD}@", f"voicepool:{AGENT_PASSWORD}@", 1)
        assert check_url(url) is None

        # What no retry fixes is refused at start with one clear line, and no secret in it.
        wrong_sentinel = check_url(
            group.url_with("not-it").replace(f":{PASSWORD}@", f"voicepool:{AGENT_PASSWORD}@")
        )
        assert wrong_sentinel is not None and "Sentinel refused authentication" in wrong_sentinel
        wrong_user = check_url(url.replace(AGENT_PASSWORD, "not-it"))
        assert wrong_user is not None and "authentication failed" in wrong_user
        wrong_ca = check_url(url.replace(str(tls.ca), str(other_ca)))
        assert wrong_ca is not None and "TLS" in wrong_ca
        for problem in (wrong_sentinel, wrong_user, wrong_ca):
            assert PASSWORD not in problem and AGENT_PASSWORD not in problem

        store = RedisSessionStore(url, "default", "sec-0", 10)
        assert store.wait_replicas == 1
        inbox = await registered(store)
        try:
            record = SessionRecord.new("sec-session", 3600, "", "")
            assert await store.allocate(record) == "sec-0"
            record.history.append(Message(role="user", content="remember the word pineapple"))
            await store.save(record)  # fenced, and acknowledged by the TLS replica (WAIT)
            group.kill_primary()

            async def serves_again() -> bool:
                nonlocal inbox
                try:
                    await inbox.aclose()
                    inbox = await registered(store)
                    fresh = SessionRecord.new(f"sec-after-{id(inbox)}", 3600, "", "")
                    return await store.allocate(fresh) == "sec-0"
                except (StoreUnavailable, RedisError):
                    return False

            await until(serves_again, 20.0, "the store on the promoted replica", interval=0.2)
            kept = await store.get("sec-session")
            assert kept is not None and kept.history[0].content == "remember the word pineapple"
        finally:
            await inbox.aclose()
            await store.close()
