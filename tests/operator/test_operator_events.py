"""The operator's events as a platform engineer reads them: `kubectl describe` (the real kubectl) of a
cluster-scoped NodeTuningProfile and of a VoiceAgentPool, with the operator running against kmock."""

import pathlib

from tests.deploy.kubeapi import kubectl_run
from tests.operator import samples
from tests.operator.cluster import Cluster
from tests.operator.expect import POOLS, events_of
from tests.operator.harness import Kube, StartOperator, wait_for, write_kubeconfig
from voice_operator import constants as c

PROFILES = "voicepool.dev/v1alpha1/nodetuningprofiles"


def described_events(out: str) -> list[str]:
    """The rows of the Events table at the end of `kubectl describe` (empty for "Events: <none>")."""
    table = out.split("\nEvents:", 1)[1]
    return [
        line.strip() for line in table.splitlines()[1:] if line.strip() and not line.strip().startswith("--")
    ]


async def describe(kubeconfig: pathlib.Path, *what: str) -> list[str]:
    code, out, err = await kubectl_run(kubeconfig, "describe", *what)
    assert code == 0, err
    return described_events(out)


async def test_kubectl_describe_shows_the_operators_events(
    cluster: Cluster, kube: Kube, start_operator: StartOperator, tmp_path: pathlib.Path
) -> None:
    op = start_operator()
    await op.wait_started()
    kubeconfig = write_kubeconfig(tmp_path / "kubectl-config", str(cluster.url).rstrip("/"))

    await kube.create(PROFILES, samples.profile("realtime"))
    await kube.create(POOLS, samples.pool("demo"))
    await wait_for(lambda: events_of(cluster, "realtime", "Created"), 10, "the profile's Created event")
    await wait_for(lambda: events_of(cluster, "demo", "Created"), 10, "the pool's Created event")

    for what in (("ntp", "realtime"), ("vap", "demo", "-n", "default")):
        rows = await describe(kubeconfig, *what)
        created = [row for row in rows if " Created " in f" {row} "]
        assert len(created) == 1, (what, rows)
        assert c.MANAGER in created[0] and "kopf" not in created[0]

    # What kubectl asked for a cluster-scoped object: the events anywhere whose involvedObject has no
    # namespace (so the operator must leave it out of a profile's events, and kopf did not).
    asked = [r for r in cluster.log if r.url.path == "/api/v1/events" and "fieldSelector" in r.params]
    assert any(
        "involvedObject.name=realtime" in r.params["fieldSelector"]
        and "involvedObject.namespace=," in r.params["fieldSelector"] + ","
        for r in asked
    ), [r.params for r in asked]
    event = events_of(cluster, "realtime", "Created")[0]
    assert "namespace" not in event["involvedObject"] and event["metadata"]["namespace"] == "default"
    assert event["source"]["component"] == event["reportingComponent"] == c.MANAGER
