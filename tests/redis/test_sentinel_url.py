"""The Sentinel URL form (docs/redis.md, "Connection"): parsed as documented, bad ones refused with a
clear message, accepted by the CRD and the operator, and no secret in what is shown."""

from __future__ import annotations

import pytest

from tests.operator import crdschema, samples
from voice_agent.store.redis import check_url
from voice_agent.store.redis_url import (
    _node_kwargs,
    _sentinel_kwargs,
    describe,
    is_sentinel,
    parse_sentinel,
)
from voice_operator.pools.deployment import agent_env
from voice_operator.pools.spec import parse_pool_spec


def test_plain_urls_are_not_sentinel_urls() -> None:
    assert parse_sentinel("redis://:pw@redis:6379/0") is None
    assert parse_sentinel("rediss://redis:6380/0") is None
    assert not is_sentinel("redis://redis:6379/0")
    assert describe("redis://:pw@redis:6379/0") == "redis redis:6379"


def test_sentinel_url_names_sentinels_service_db_and_the_nodes_options() -> None:
    url = "redis+sentinel://vp:s3cret@s0:26380,s1,[::1]:26381/voicepool/2?sentinel_password=spw&health_check_interval=5"
    target = parse_sentinel(url)
    assert target is not None and is_sentinel(url)
    assert target.sentinels == (("s0", 26380), ("s1", 26379), ("::1", 26381))
    assert target.service == "voicepool"
    assert not target.tls
    node = _node_kwargs(target)
    assert (node["username"], node["password"], node["db"]) == ("vp", "s3cret", 2)
    assert node["health_check_interval"] == 5
    assert "host" not in node and "port" not in node
    sentinels = _sentinel_kwargs(target, node, None)
    assert sentinels["password"] == "spw"  # the Sentinels' own password, not the servers'
    assert "ssl" not in sentinels and "db" not in sentinels


def test_tls_sentinel_url_uses_tls_and_one_ca_for_sentinels_and_servers() -> None:
    target = parse_sentinel("rediss+sentinel://:pw@s0/voicepool?ssl_ca_certs=/etc/ca.crt")
    assert target is not None and target.tls
    node = _node_kwargs(target)
    assert node["ssl_ca_certs"] == "/etc/ca.crt"
    kwargs = _sentinel_kwargs(target, node, None)
    # The plain handshake of every client built there (test_handshake.py).
    assert kwargs.pop("driver_info") is None and kwargs.pop("maint_notifications_config").enabled is False
    assert kwargs == {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.crt",
        "decode_responses": True,
        "retry": None,
    }


def test_what_is_shown_carries_no_secret() -> None:
    url = "redis+sentinel://vp:s3cret@s0:26379/voicepool/0?sentinel_password=spw"
    target = parse_sentinel(url)
    assert target is not None
    for shown in (repr(target), describe(url)):
        assert "s3cret" not in shown and "spw" not in shown
    assert describe(url) == "primary 'voicepool' of the Sentinels s0:26379"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s0:26379", "names the primary's service"),
        ("redis+sentinel://s0:26379/", "names the primary's service"),
        ("redis+sentinel:///voicepool", "lists at least one Sentinel"),
        ("redis+sentinel://s0:port/voicepool", "bad Sentinel address 's0:port'"),
        ("redis+sentinel://s0/voicepool/zero", "must be a number, not 'zero'"),
    ],
)
def test_bad_sentinel_urls_are_refused_at_start_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sentinel(url)
    problem = check_url(url)
    assert problem is not None and problem.startswith("invalid URL") and message in problem


@pytest.mark.parametrize(
    ("redis", "admitted"),
    [
        ({"url": "redis+sentinel://s0:26379,s1:26379/voicepool/0"}, True),
        ({"url": "rediss+sentinel://s0:26379/voicepool/0", "tls": True}, True),
        ({"url": "redis+sentinel://s0:26379/voicepool/0", "tls": True}, False),
        ({"url": "sentinel://s0:26379/voicepool"}, False),
    ],
)
def test_crd_and_operator_take_the_sentinel_schemes(redis: dict[str, object], admitted: bool) -> None:
    body = samples.pool(redis=redis)
    _, errors = crdschema.admit(body)
    assert (errors == []) is admitted, errors
    if admitted:
        assert parse_pool_spec(body["spec"]).redis_url == redis["url"]


def test_the_pool_renders_the_sentinel_url_into_the_agents_env_as_given() -> None:
    url = "redis+sentinel://s0:26379,s1:26379/voicepool/0"
    env = agent_env("voicepool", "pool", parse_pool_spec(samples.pool(redis={"url": url})["spec"]))
    assert [e for e in env if e["name"] == "REDIS_URL"] == [{"name": "REDIS_URL", "value": url}]
    secret = samples.pool(redis={"secretRef": {"name": "redis-ha"}})["spec"]
    [ref] = [e for e in agent_env("voicepool", "pool", parse_pool_spec(secret)) if e["name"] == "REDIS_URL"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "redis-ha", "key": "url"}
