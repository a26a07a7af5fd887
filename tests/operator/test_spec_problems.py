"""A spec with several problems is reported with all of them (docs/operator.md, Status), not only the
first the parser meets: whoever fixes a stored object learns in one go what to change."""

import pytest

from tests.operator import samples
from voice_operator.fields import SpecError
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.profiles.spec import parse_profile_spec


def problems_of(parse: object, spec: dict[str, object]) -> tuple[str, ...]:
    assert callable(parse)
    with pytest.raises(SpecError) as caught:
        parse(spec)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def test_every_problem_of_a_pool_is_named() -> None:
    spec = samples.pool(
        replicas={"min": 5, "max": 2},
        sessionsPerAgent=0,
        bufferSessions="lots",
        ice={"addresses": ["10.0.0.300"]},
        hostNetwork="yes",
        turn={"minSilenceMs": 1000, "maxSilenceMs": 300},
    )["spec"]
    problems = problems_of(parse_pool_spec, spec)
    expected = [
        "replicas.min must be",
        "sessionsPerAgent must be greater than 0",
        "bufferSessions must be a non-negative integer",
        "spec.hostNetwork must be a boolean",
        "spec.ice.addresses[0] must be an IP address or CIDR, got '10.0.0.300'",
        "turn.maxSilenceMs must be greater than turn.minSilenceMs",
    ]
    assert len(problems) == len(expected), problems
    for text, problem in zip(expected, problems, strict=True):
        assert text in problem


def test_a_problem_the_reading_cannot_go_past_keeps_the_ones_found_before() -> None:
    spec = samples.pool(replicas={"min": 5, "max": 2}, session={"ttlSeconds": "an hour"})["spec"]
    problems = problems_of(parse_pool_spec, spec)
    assert len(problems) == 2 and "replicas.min" in problems[0]
    assert problems[1] == "spec.session.ttlSeconds must be an integer"


def test_one_problem_is_one_problem() -> None:
    assert problems_of(parse_pool_spec, samples.pool(sessionsPerAgent=0)["spec"]) == (
        "sessionsPerAgent must be greater than 0",
    )


def test_every_problem_of_a_profile_is_named() -> None:
    spec = samples.profile(sysctls={"kernel.panic": "1", "net.core.rmem_max": "1; reboot"})["spec"]
    assert problems_of(parse_profile_spec, spec) == (
        "sysctl keys not in the allowlist: kernel.panic",
        "sysctl net.core.rmem_max has an invalid value",
    )
