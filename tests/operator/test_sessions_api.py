"""`kubectl get/describe/delete voicesessions`: real kubectl against the operator's sessions API, with
real redis-server, real agents and a real voice client (docs/operator.md, "Sessions in kubectl").

kmock is the API server: it holds the pools and answers the operator's SubjectAccessReviews. alice
may read and delete sessions in team-a and list them cluster-wide; the namespace secret is not hers.
"""

import asyncio
import pathlib
import ssl
import uuid

import aiohttp
import pytest

from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS
from tests.operator.harness import Kube, RedisServer, StartOperator, wait_for
from tests.operator.samples import pool
from tests.operator.sessions import (
    Identities,
    answer_reviews,
    start_agents,
    start_operator_with_tls,
    wait_registered,
    wait_served,
)
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_agent.protocol.signaling import CloseCode
from voice_agent.store.redis import RedisSessionStore
from voice_agent.testing.client import VoiceClient
from voice_operator import constants as c
from voice_operator.sessions import objects as o

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("sessions-api")]

BASE = f"/apis/{o.GROUP_VERSION}"
SAID = "please book a table for two"
REPLY = "done, a table for two at eight"


def alice_may(user: str, verb: str, namespace: str) -> bool:
    return user == "alice" and (namespace == "team-a" or (namespace == "" and verb in {"list", "watch"}))


async def stored_session(url: str, namespace: str, pool_name: str, agent_id: str) -> str:
    """A session with one turn, written as the agents' store writes it, owned by a registered agent."""
    store = RedisSessionStore(url, c.pool_id(namespace, pool_name), agent_id, 10)
    inbox = store.pubsub()
    await inbox.subscribe(store.inbox)
    await store.heartbeat(f"http://{agent_id}:8000", 600_000, [])
    record = SessionRecord.new(uuid.uuid4().hex, 3600, "", store.pool)
    record.history = [Message(role="user", content=SAID), Message(role="assistant", content=REPLY)]
    assert await store.allocate(record) == agent_id
    await store.close()  # the registry entry stays (heartbeat TTL): the record is what is listed
    return record.id


async def test_kubectl_lists_watches_describes_and_deletes_sessions(
    cluster: Cluster,
    kube: Kube,
    start_operator: StartOperator,
    redis_server: RedisServer,
    tmp_path: pathlib.Path,
) -> None:
    reviews = answer_reviews(cluster, alice_may)
    url = redis_server.url
    await kube.create(POOLS, pool("alpha", "team-a", redis={"url": url}))
    await kube.create(POOLS, pool("beta", "team-a", redis={"url": url}))
    await kube.create(
        POOLS, pool("chatty", "team-a", redis={"url": url}, session={"exposeTranscripts": True})
    )
    await kube.create(POOLS, pool("hidden", "secret", redis={"url": url}))
    quiet = await stored_session(url, "team-a", "beta", "beta-0")
    chatty = await stored_session(url, "team-a", "chatty", "chatty-0")
    hidden = await stored_session(url, "secret", "hidden", "hidden-0")

    agents = await asyncio.to_thread(start_agents, tmp_path, url, "team-a", "alpha", 2)
    try:
        await wait_registered(url, c.pool_id("team-a", "alpha"), ["alpha-0", "alpha-1"])
        ids = Identities.make(tmp_path)
        op = await start_operator_with_tls(start_operator, ids)
        kubectl = ids.kubectl(tmp_path, op, "alice", group="voicepool-oncall")
        await wait_served(kubectl, "team-a")

        caller = VoiceClient(agents[0].url)
        live = (await caller.create_session())["id"]

        # List: the columns, the namespace's sessions only.
        listed = await kubectl("get", "voicesessions", "-n", "team-a")
        assert listed.code == 0, listed.err
        header, *rows = listed.out.splitlines()
        assert header.split() == ["NAME", "POOL", "AGENT", "STATUS", "TURNS", "LAST", "V2V", "AGE"]
        assert {r.split()[0] for r in rows} == {live, quiet, chatty}
        assert next(r for r in rows if r.startswith(quiet)).split()[1:5] == ["beta", "beta-0", "created", "1"]

        # -A (alice may list cluster-wide) and -l.
        everywhere = await kubectl("get", "voicesessions", "-A")
        assert everywhere.code == 0, everywhere.err
        assert everywhere.out.splitlines()[0].split()[0] == "NAMESPACE"
        assert {tuple(r.split()[:2]) for r in everywhere.out.splitlines()[1:]} == {
            ("team-a", live),
            ("team-a", quiet),
            ("team-a", chatty),
            ("secret", hidden),
        }
        selected = await kubectl("get", "voicesessions", "-n", "team-a", "-l", "voicepool.dev/pool=alpha")
        assert [r.split()[0] for r in selected.out.splitlines()[1:]] == [live]

        # describe: a timeline; what was said only where the pool allows it.
        described = await kubectl("describe", "voicesession", quiet, "-n", "team-a")
        assert described.code == 0, described.err
        assert "Timeline:" in described.out and "turn 1: caller (6 words)" in described.out
        assert SAID not in described.out and REPLY not in described.out
        told = await kubectl("describe", "voicesession", chatty, "-n", "team-a")
        assert f'turn 1: caller: "{SAID}"' in told.out and REPLY in told.out

        # explain reads the group's OpenAPI v3 document.
        explained = await kubectl("explain", "voicesessions.status.timeline")
        assert explained.code == 0, explained.err
        assert "What was said appears only" in " ".join(explained.out.split())

        # Unknown id and a namespace alice may not see: kubectl's own messages.
        # (kubectl get/describe/delete of a missing object then look the namespace up under /api/v1,
        # which the aggregator serves in a cluster and this operator, pointed at directly, does not:
        # the object's own answer is read with --raw.)
        unknown = await kubectl("get", "--raw", f"{BASE}/namespaces/team-a/voicesessions/no-such-call")
        assert unknown.code != 0
        assert f"Error from server (NotFound): {o.qualified('no-such-call')} not found" in unknown.err
        hidden_ns = await kubectl("get", "voicesessions", "-n", "secret")
        assert hidden_ns.code != 0 and "Error from server (Forbidden)" in hidden_ns.err, hidden_ns.err
        assert 'User "alice" cannot list resource "voicesessions"' in hidden_ns.err
        assert {"voicepool-oncall"} <= {g for r in reviews for g in r["groups"]}

        # -w: a new session appears in the watch.
        watch = await kubectl.watch("voicesessions", "-n", "team-a")
        try:
            assert watch.stdout is not None
            first = await asyncio.wait_for(watch.stdout.readline(), 20)
            assert first.split()[0] == b"NAME"
            newcomer = (await VoiceClient(agents[1].url).create_session())["id"]

            async def seen() -> bool:
                assert watch.stdout is not None
                line = await asyncio.wait_for(watch.stdout.readline(), 20)
                return line.split()[:1] == [newcomer.encode()]

            await wait_for(seen, 20, "the new session in kubectl get -w")
        finally:
            watch.terminate()
            await watch.wait()
        # A list answers from a copy kept by the pools' events: it has the newcomer at once.
        relisted = await kubectl("get", "voicesessions", "-n", "team-a")
        assert {r.split()[0] for r in relisted.out.splitlines()[1:]} == {live, quiet, chatty, newcomer}

        # delete: the owning agent ends the call and the client sees 1000. (`--`: an id may begin
        # with "-", which kubectl would read as a flag.)
        await caller.connect(live)
        await caller.wait_for(lambda e: e["type"] == "session", timeout=15)
        deleted = await kubectl("delete", "voicesession", "-n", "team-a", "--", live)
        assert deleted.code == 0, deleted.err
        assert f'voicesession.sessions.voicepool.dev "{live}" deleted' in deleted.out
        assert await caller.wait_closed(10) == CloseCode.ENDED
        gone = await kubectl("get", "--raw", f"{BASE}/namespaces/team-a/voicesessions/{live}")
        assert "(NotFound)" in gone.err
        after = await kubectl("get", "voicesessions", "-n", "team-a")
        assert {r.split()[0] for r in after.out.splitlines()[1:]} == {quiet, chatty, newcomer}
        await caller.close()

        await front_proxy_headers_name_the_user(ids, op.ports["external"])
    finally:
        for agent in agents:
            agent.stop()


async def front_proxy_headers_name_the_user(ids: Identities, port: int) -> None:
    """As the aggregator calls: its certificate, the user in X-Remote-User; no certificate, no entry."""
    base = f"https://127.0.0.1:{port}/apis/sessions.voicepool.dev/v1alpha1/namespaces/team-a/voicesessions"
    proxy = ids.front_proxy.issue("front-proxy-client")
    context = ssl.create_default_context(cafile=str(ids.serving.path))
    context.load_cert_chain(str(proxy.cert), str(proxy.key))
    anonymous = ssl.create_default_context(cafile=str(ids.serving.path))
    async with aiohttp.ClientSession() as http:
        for user, ctx, expected in (
            ("alice", context, 200),
            ("mallory", context, 403),
            ("alice", anonymous, 401),
        ):
            async with http.get(base, ssl=ctx, headers={"X-Remote-User": user}) as resp:
                assert resp.status == expected, (user, await resp.text())


async def test_sessions_of_a_redis_that_is_down_are_a_503_not_an_empty_list(
    cluster: Cluster,
    kube: Kube,
    start_operator: StartOperator,
    redis_server: RedisServer,
    tmp_path: pathlib.Path,
) -> None:
    answer_reviews(cluster, alice_may)
    await kube.create(POOLS, pool("alpha", "team-a", redis={"url": redis_server.url}))
    ids = Identities.make(tmp_path)
    op = await start_operator_with_tls(start_operator, ids)
    kubectl = ids.kubectl(tmp_path, op, "alice")
    await wait_served(kubectl, "team-a")
    redis_server.stop()
    down = await kubectl("get", "voicesessions", "-n", "team-a")
    assert down.code != 0, down.out
    assert "Error from server (ServiceUnavailable): cannot read the sessions of pool team-a/alpha" in down.err
