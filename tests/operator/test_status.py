"""Status summaries and small decisions (pure): pool status, conditions, tuning, deletion costs."""

from typing import Any

from tests.operator import samples
from voice_operator import constants as c
from voice_operator.conditions import find, merge_conditions
from voice_operator.ensure import update_patch
from voice_operator.pools.load import AgentLoad, PoolLoad, parse_agent
from voice_operator.pools.reconcile import deletion_cost_changes
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.pools.status import Problem, pool_status, transition_events
from voice_operator.profiles.status import label_changes, matching_nodes, profile_status, tuned_nodes
from voice_operator.status_io import status_changed

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
SPEC = parse_pool_spec(
    samples.pool(replicas={"min": 2, "max": 6}, sessionsPerAgent=4, bufferSessions=2)["spec"]
)


def deployment(
    replicas: int, ready: int, updated: int | None = None, want: int | None = None
) -> dict[str, Any]:
    return {
        "spec": {"replicas": want if want is not None else replicas},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": ready if updated is None else updated,
        },
    }


def load(*actives: int, alive: bool = True) -> PoolLoad:
    return PoolLoad(tuple(AgentLoad(f"a{i}", n, 4, False, alive) for i, n in enumerate(actives)))


def status(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "demo",
        "spec": SPEC,
        "generation": 3,
        "deployment": deployment(2, 2),
        "load": load(1, 2),
        "problems": [],
        "previous": {},
        "now": T0,
    }
    args.update(kw)
    return pool_status(**args)


def cond(st: dict[str, Any], kind: str) -> dict[str, Any]:
    found = find(st["conditions"], kind)
    assert found is not None
    return dict(found)


def test_a_pool_scaled_to_zero_is_ready_and_wakes_on_a_session_request() -> None:
    spec = parse_pool_spec(
        samples.pool(autoscaling={"engine": "keda"}, replicas={"min": 0, "max": 3})["spec"]
    )
    idle = status(spec=spec, deployment=deployment(0, 0), load=load())
    assert cond(idle, "Ready")["status"] == "True" and cond(idle, "Ready")["reason"] == "ScaledToZero"
    assert (idle["demand"], idle["desiredReplicas"], idle["capacity"]) == (0, 0, 0)
    # The waker recorded a session request: one agent wanted, and none ready yet is not Ready.
    woken = status(spec=spec, deployment=deployment(0, 0, want=1), load=PoolLoad((), waking=True))
    assert cond(woken, "Ready")["reason"] == "AgentsNotReady"
    assert cond(woken, "Scaling")["reason"] == "ScalingUp"
    # A pool of the HPA never has zero agents on purpose.
    assert cond(status(deployment=deployment(0, 0)), "Ready")["status"] == "False"


def test_ready_pool_reports_sessions_capacity_and_demand() -> None:
    st = status()
    assert st["replicas"] == 2 and st["readyReplicas"] == 2
    assert st["activeSessions"] == 3
    assert st["capacity"] == 8
    assert st["demand"] == 5  # 3 active + buffer 2
    assert st["desiredReplicas"] == 2
    assert st["observedGeneration"] == 3
    assert st["selector"] == "app.kubernetes.io/name=voice-agent,voicepool.dev/pool=demo"
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Ready")["reason"] == "AgentsReady"
    assert cond(st, "Scaling")["status"] == "False"
    assert cond(st, "Degraded") | {"lastTransitionTime": None} == {
        "type": "Degraded",
        "status": "False",
        "reason": "AsExpected",
        "message": "all references resolved",
        "observedGeneration": 3,
        "lastTransitionTime": None,
    }


def test_demand_above_capacity_says_scaling_up() -> None:
    st = status(load=load(4, 4, 3))  # 11 + 2 = 13 sessions -> 4 agents
    assert st["desiredReplicas"] == 4
    scaling = cond(st, "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("True", "ScalingUp")
    assert "demand 13 sessions wants 4 agents, have 2" in scaling["message"]


def test_rollout_in_progress_says_rolling_out() -> None:
    st = status(deployment=deployment(3, 2, updated=1, want=2))
    assert (cond(st, "Scaling")["status"], cond(st, "Scaling")["reason"]) == ("True", "RollingOut")


def test_a_rollout_shows_the_draining_agents_and_the_calls_they_still_have_to_move() -> None:
    agents = (
        AgentLoad("old", 3, 4, True, True),
        AgentLoad("new", 1, 4, False, True),
        AgentLoad("gone", 2, 4, True, False),  # a dead agent's count is stale: it moves nothing
    )
    st = status(deployment=deployment(3, 3, updated=1, want=2), load=PoolLoad(agents))
    assert (st["drainingAgents"], st["movingSessions"]) == (1, 3)
    assert cond(st, "Scaling")["message"] == "1/3 agents updated; 1 draining, 3 calls to move"
    moved = status(deployment=deployment(3, 3, updated=2, want=2), load=PoolLoad(agents[1:]))
    assert (moved["drainingAgents"], moved["movingSessions"]) == (0, 0)
    assert cond(moved, "Scaling")["message"] == "2/3 agents updated"
    # Redis unreadable mid-rollout: the last known figures stay.
    blind = status(load=None, previous=st, problems=[Problem("RedisUnavailable", "cannot read")])
    assert (blind["drainingAgents"], blind["movingSessions"]) == (1, 3)


def test_missing_deployment_and_unready_agents_are_not_ready() -> None:
    assert cond(status(deployment=None), "Ready")["reason"] == "DeploymentMissing"
    st = status(deployment=deployment(2, 0))
    assert (cond(st, "Ready")["status"], cond(st, "Ready")["reason"]) == ("False", "AgentsNotReady")
    assert st["capacity"] == 0


def test_problems_make_the_pool_degraded_with_the_reason() -> None:
    st = status(problems=[Problem("SecretNotFound", "Secret default/groq not found")])
    degraded = cond(st, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "SecretNotFound",
        "Secret default/groq not found",
    )


def test_redis_down_keeps_the_last_known_load() -> None:
    before = status()
    st = status(load=None, previous=before, problems=[Problem("RedisUnavailable", "cannot read")])
    assert st["activeSessions"] == 3 and st["demand"] == 5 and st["desiredReplicas"] == 2
    assert cond(st, "Degraded")["reason"] == "RedisUnavailable"


def test_invalid_spec_is_not_ready_and_degraded() -> None:
    st = status(spec=None, problems=[Problem("InvalidSpec", "replicas.min must be >= 1")])
    assert cond(st, "Ready")["reason"] == "InvalidSpec"
    assert cond(st, "Degraded")["message"] == "replicas.min must be >= 1"
    assert "capacity" not in st


def test_transition_times_move_only_on_a_flip_so_a_steady_status_needs_no_write() -> None:
    first = status(now=T0)
    again = status(previous=first, now=T1)
    assert not status_changed(first, again)
    assert all(c["lastTransitionTime"] == T0 for c in again["conditions"])
    flipped = status(previous=first, deployment=deployment(2, 0), now=T1)
    assert status_changed(first, flipped)
    assert cond(flipped, "Ready")["lastTransitionTime"] == T1
    assert cond(flipped, "Degraded")["lastTransitionTime"] == T0


def test_merge_conditions_stamps_new_types() -> None:
    merged = merge_conditions(None, [{"type": "Ready", "status": "True"}], now=T1)
    assert merged == [{"type": "Ready", "status": "True", "lastTransitionTime": T1}]


def test_agent_load_ignores_dead_agents_and_garbage() -> None:
    pool = PoolLoad(
        (
            parse_agent("a", 3.0, {"capacity": "4", "draining": "0"}, alive=True),
            parse_agent("b", 2.0, {"capacity": "4", "draining": "1"}, alive=True),
            parse_agent("c", 4.0, {"capacity": "4", "draining": "0"}, alive=False),
            parse_agent("d", 0.0, {"capacity": None, "draining": None}, alive=True),
            parse_agent("e", -1.0, {"capacity": "many", "draining": "0"}, alive=True),
        )
    )
    assert pool.active_sessions == 5  # draining agents still carry calls; dead ones do not
    assert pool.free_capacity == 1
    assert pool.sessions_by_agent() == {"a": 3, "b": 2, "d": 0, "e": 0}


def pod(name: str, cost: str | None = None) -> dict[str, Any]:
    annotations = {c.DELETION_COST_ANNOTATION: cost} if cost is not None else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_deletion_costs_follow_session_counts_and_only_changed_pods_are_written() -> None:
    pods = [pod("a", "3"), pod("b", "0"), pod("c"), pod("d", "5")]
    assert deletion_cost_changes(pods, {"a": 3, "b": 2, "c": 0}) == {"b": "2", "c": "0", "d": "0"}
    assert deletion_cost_changes([pod("a", "3")], {"a": 3}) == {}


def test_update_patch_never_sends_the_replica_count_the_hpa_owns() -> None:
    patch = update_patch({"kind": "Deployment", "spec": {"replicas": 2, "template": {}}})
    assert patch == {"kind": "Deployment", "spec": {"template": {}}}
    service = {"kind": "Service", "spec": {"ports": []}}
    assert update_patch(service) == service


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def tuner(node_name: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"t-{node_name}"}
    if deleting:
        meta["deletionTimestamp"] = T0
    return {
        "metadata": meta,
        "spec": {"nodeName": node_name},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_tuned_nodes_match_the_selector_and_have_a_verified_tuner() -> None:
    nodes = [
        node("n1", role="voice"),
        node("n2", role="voice"),
        node("n3", role="web"),
        node("n4", role="voice"),
    ]
    matching = matching_nodes(nodes, {"role": "voice"})
    assert matching == {"n1", "n2", "n4"}
    assert matching_nodes(nodes, {}) == {"n1", "n2", "n3", "n4"}
    pods = [tuner("n1", True), tuner("n2", False), tuner("n3", True), tuner("n4", True, deleting=True)]
    assert tuned_nodes(matching, pods) == {"n1"}


def test_label_changes_add_and_remove_only_what_differs() -> None:
    key = c.tuned_label("rt")
    nodes = [node("n1"), node("n2", **{key: "true"}), node("n3", **{key: "true"}), node("n4")]
    assert label_changes(nodes, key, {"n1", "n2"}) == {"n1": "true", "n3": None}


def test_profile_status_counts_and_conditions() -> None:
    st = profile_status(desired=3, tuned=2, generation=1, problem=None, previous={}, now=T0)
    assert (st["desiredNodes"], st["tunedNodes"]) == (3, 2)
    assert cond(st, "Ready")["reason"] == "Tuning"
    done = profile_status(desired=3, tuned=3, generation=1, problem=None, previous=st, now=T1)
    assert (cond(done, "Ready")["status"], cond(done, "Ready")["reason"]) == ("True", "NodesTuned")
    assert cond(profile_status(desired=0, tuned=0, generation=1, problem=None, previous={}), "Ready")[
        "reason"
    ] == ("NoMatchingNodes")
    bad = profile_status(desired=0, tuned=0, generation=1, problem=("InvalidSpec", "no"), previous={})
    assert cond(bad, "Degraded")["status"] == "True"


def test_events_are_posted_on_real_transitions_only() -> None:
    fresh = status(deployment=deployment(2, 0))  # a new pool: not ready yet, not degraded
    assert transition_events({}, fresh) == []
    ready = status(previous=fresh)
    assert transition_events(fresh, ready) == [("Normal", "AgentsReady", cond(ready, "Ready")["message"])]
    assert transition_events(ready, status(previous=ready)) == []
    lost = status(previous=ready, deployment=deployment(2, 1))
    assert transition_events(ready, lost) == [("Warning", "AgentsNotReady", "1/2 agents ready")]
    broken = status(problems=[Problem("SecretNotFound", "Secret default/x not found")])
    assert transition_events({}, broken) == [("Warning", "SecretNotFound", "Secret default/x not found")]
    healed = status(previous=broken)
    assert transition_events(broken, healed) == [("Normal", "AsExpected", "all references resolved")]
