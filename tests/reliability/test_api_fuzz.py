"""Schemathesis against the running agent's /openapi.json: every operation, generated valid and
invalid input, no 5xx, and every response (status, content type, body, headers) as documented."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.procs import AgentProcess, running_agent

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability-api-fuzz")]

# Bounded: the suite must stay fast; hypothesis shrinks and replays failures from its database.
EXAMPLES = 40


# Defaults, and locked down: a token nobody sends (401) and a creation rate soon spent (429), so
# the refusals are checked against the document too.
CONFIGS = {
    "defaults": {},
    "locked": {"voice_api_token": "fuzz-token-never-sent", "voice_sessions_per_ip_burst": "2"},
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def agent(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    env = {"voice_max_sessions": "500", "voice_connect_timeout_s": "10", "voice_log_level": "WARNING"}
    with running_agent(tmp_path_factory.mktemp("agent"), **env, **CONFIGS[request.param]) as proc:
        yield proc


@pytest.fixture(scope="module")
def api_schema(agent: AgentProcess) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{agent.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_conforms_and_never_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(timeout=10)


def test_cross_origin_requests_get_no_cors_headers_by_default(agent: AgentProcess) -> None:
    preflight = {"origin": "https://elsewhere.example", "access-control-request-method": "POST"}
    answered = httpx.options(f"{agent.url}/v2/sessions", headers=preflight, timeout=5)
    assert "access-control-allow-origin" not in answered.headers, "same-origin only unless configured"
    simple = httpx.get(f"{agent.url}/health", headers={"origin": "https://elsewhere.example"}, timeout=5)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
