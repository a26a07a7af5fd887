"""Bad input never crash-loops the operator: the pool says what is wrong and recovers when fixed."""

import base64

from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS, condition, events_of, wait_owned, wait_status
from tests.operator.harness import Kube, OperatorProcess, RedisServer, StartOperator, wait_for

SECRETS = ("dg-key-0c1f9a", "el-key-77be2d", "redis-pass-5e8c1b", "turn-cred-a91d04")


def secret(name: str, **data: str) -> dict[str, object]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": encoded,
    }


def degraded_reason(cluster: Cluster, name: str) -> str | None:
    return condition(cluster.obj(POOLS, "default", name), "Degraded").get("reason")


async def test_missing_secrets_and_profile_degrade_the_pool_until_they_exist(
    cluster: Cluster, kube: Kube, start_operator: StartOperator
) -> None:
    op = start_operator()
    await op.wait_started()
    await kube.create(POOLS, samples.cloud_pool("cloud"))
    # The objects are still rendered (pods wait for their Secrets), the condition names the gap.
    await wait_owned(cluster, "default", "cloud")
    body = await wait_status(
        cluster, "cloud", "Degraded", lambda b: condition(b, "Degraded").get("reason") == "SecretNotFound"
    )
    message = condition(body, "Degraded")["message"]
    for name in ("deepgram", "groq", "elevenlabs", "redis", "turn"):
        assert f"Secret default/{name} not found" in message
    assert "NodeTuningProfile realtime not found" in message
    assert condition(body, "Degraded")["status"] == "True"
    warned = await wait_for(lambda: events_of(cluster, "cloud", "SecretNotFound"), 10, "a Warning event")
    assert len(warned) == 1 and warned[0]["type"] == "Warning"

    # Secrets appear, one without the key the pool names.
    await kube.create("v1/secrets", secret("deepgram", **{"api-key": SECRETS[0]}))
    await kube.create("v1/secrets", secret("groq", wrong="x"))
    await kube.create("v1/secrets", secret("elevenlabs", **{"api-key": SECRETS[1]}))
    await kube.create("v1/secrets", secret("redis", url=f"rediss://:{SECRETS[2]}@127.0.0.1:1/0"))
    await kube.create("v1/secrets", secret("turn", username="u", credential=SECRETS[3]))
    await wait_for(lambda: degraded_reason(cluster, "cloud") == "SecretKeyNotFound", 10, "SecretKeyNotFound")
    message = condition(cluster.obj(POOLS, "default", "cloud"), "Degraded")["message"]
    assert "Secret default/groq has no key 'k'" in message
    # Secret values never leak into the status.
    await wait_for(lambda: degraded_reason(cluster, "cloud") == "SecretKeyNotFound", 10, "still degraded")

    await kube.patch("v1/secrets", "default", "groq", {"data": {"k": base64.b64encode(b"g").decode()}})
    await kube.create("voicepool.dev/v1alpha1/nodetuningprofiles", samples.profile("realtime"))
    # What is left is Redis (nothing listens on port 1): the references are all resolved now.
    await wait_for(lambda: degraded_reason(cluster, "cloud") == "RedisUnavailable", 10, "references resolved")
    # No secret value in the status, the events or the operator's logs (the Redis one was used).
    exposed = str(cluster.obj(POOLS, "default", "cloud")) + str(cluster.live("v1/events")) + op.log_text()
    for value in SECRETS:
        assert value not in exposed
    assert op.proc.poll() is None


async def test_invalid_spec_that_slipped_past_the_schema_is_reported_not_crashed_on(
    cluster: Cluster, kube: Kube, start_operator: StartOperator
) -> None:
    """An object stored before a stricter CRD (kmock does not validate): the operator checks again."""
    op: OperatorProcess = start_operator()
    await op.wait_started()
    bad = samples.pool("bad", replicas={"min": 5, "max": 2}, ice={"addresses": ["10.0.0.300"]})
    await kube.create(POOLS, bad)
    await kube.create(POOLS, samples.pool("good"))
    body = await wait_status(
        cluster, "bad", "InvalidSpec", lambda b: condition(b, "Degraded").get("reason") == "InvalidSpec"
    )
    # Every problem, not only the first (docs/operator.md, Status).
    message = condition(body, "Degraded")["message"]
    assert "replicas.min must be >= 1 and <= replicas.max" in message
    assert "spec.ice.addresses[0] must be an IP address or CIDR, got '10.0.0.300'" in message
    assert condition(body, "Ready")["status"] == "False"
    assert cluster.obj("apps/v1/deployments", "default", "bad") is None
    # Other pools are unaffected, and fixing the spec reconciles it.
    await wait_owned(cluster, "default", "good")
    await kube.patch(POOLS, "default", "bad", {"spec": {"replicas": {"min": 1, "max": 2}, "ice": None}})
    await wait_owned(cluster, "default", "bad")
    assert op.proc.poll() is None


async def test_a_secret_deleted_or_changed_after_recovery_is_noticed_by_the_status_cycle(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, redis_server: RedisServer
) -> None:
    """Secrets change without an event the operator sees (it gets them by name, never watches them):
    with no spec or Deployment change, the status timer alone must notice."""
    op = start_operator()
    await op.wait_started()
    await kube.create("v1/secrets", secret("dg", **{"api-key": SECRETS[0]}))
    stt = {"provider": "deepgram", "secretRef": {"name": "dg"}}
    await kube.create(POOLS, samples.pool("keyed", redis={"url": redis_server.url}, providers={"stt": stt}))
    await wait_for(lambda: degraded_reason(cluster, "keyed") == "AsExpected", 15, "the pool resolved")

    await kube.delete("v1/secrets", "default", "dg")
    await wait_for(lambda: degraded_reason(cluster, "keyed") == "SecretNotFound", 15, "the deletion noticed")
    await wait_for(lambda: events_of(cluster, "keyed", "SecretNotFound"), 10, "a Warning event")

    await kube.create("v1/secrets", secret("dg", **{"api-key": SECRETS[0]}))
    await wait_for(lambda: degraded_reason(cluster, "keyed") == "AsExpected", 15, "recovered")
    await kube.patch("v1/secrets", "default", "dg", {"data": {"api-key": None, "apikey": "eA=="}})
    await wait_for(lambda: degraded_reason(cluster, "keyed") == "SecretKeyNotFound", 15, "the edit noticed")
    assert op.proc.poll() is None
