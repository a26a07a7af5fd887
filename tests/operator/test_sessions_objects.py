"""The sessions API's pure parts: a record as a VoiceSession, a Table row and a timeline, and the
pool field that lets what was said show."""

import datetime
import json

import pytest

from tests.operator import samples
from voice_agent.protocol.sessions import Message, SessionRecord
from voice_operator.fields import SpecError
from voice_operator.pools.spec import parse_pool_spec
from voice_operator.redis_clients import RedisClients
from voice_operator.sessions import discovery
from voice_operator.sessions import objects as o
from voice_operator.sessions.store import SessionReader

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def session(transcripts: bool = False, **fields: object) -> o.Session:
    record = SessionRecord.new("abc", 600, "agent-1", "team-a.alpha")
    record.created_at = NOW - datetime.timedelta(minutes=3, seconds=5)
    record.history = [
        Message(role="user", content="what time is it"),
        Message(role="assistant", content="it is noon", interrupted=True),
        Message(role="user", content="thanks"),
    ]
    record.metrics = {"last_turn": {"voice_to_voice_ms": 612.4}}
    data = record.model_dump(mode="json") | fields
    return o.Session(o.PoolRef("team-a", "alpha", "redis://x", transcripts), "abc", "agent-1", data)


def test_a_table_row_has_the_documented_columns() -> None:
    table = o.table([session()], "1", NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Pool",
        "Agent",
        "Status",
        "Turns",
        "Last V2V",
        "Age",
    ]
    (row,) = table["rows"]
    assert row["cells"] == ["abc", "alpha", "agent-1", "created", 2, "612ms", "3m5s"]
    meta = row["object"]["metadata"]
    assert (meta["namespace"], meta["labels"]) == ("team-a", {"voicepool.dev/pool": "alpha"})


def test_the_timeline_counts_words_unless_the_pool_allows_transcripts() -> None:
    quiet = o.voice_session(session())
    assert quiet["status"]["timeline"][1:4] == [
        "turn 1: caller (4 words)",
        "turn 1: agent, interrupted (3 words)",
        "turn 2: caller (1 words)",
    ]
    assert "it is noon" not in str(quiet) and "transcript" not in quiet["status"]
    told = o.voice_session(session(transcripts=True, transcript="thanks"))
    assert 'turn 1: agent, interrupted: "it is noon"' in told["status"]["timeline"]
    assert told["status"]["transcript"] == "thanks"


def test_rows_encoded_once_make_the_table_a_list_would_build() -> None:
    """Only Age is written per list: rows encoded earlier still show the age at the list's time."""
    sessions = [session(), session(transcripts=True, history=[], status="connected"), session(created_at="x")]
    rows = [o.EncodedRow.of(s) for s in sessions]
    later = NOW + datetime.timedelta(hours=2)
    assert json.loads(o.table_json(rows, "7", later)) == o.table(sessions, "7", later)
    assert json.loads(o.table_json([], "7", NOW)) == o.table([], "7", NOW)


def test_a_record_of_another_shape_still_lists() -> None:
    odd = session(history="not a list", metrics={"last_turn": None}, created_at="yesterday")
    (row,) = o.table([odd], "1", NOW)["rows"]
    assert row["cells"][4:] == [0, "", ""]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert o.human_duration(seconds) == shown


def test_discovery_names_the_kind_and_its_verbs() -> None:
    (resource,) = discovery.api_resource_list()["resources"]
    assert (resource["name"], resource["kind"], resource["namespaced"]) == (
        "voicesessions",
        "VoiceSession",
        True,
    )
    assert resource["verbs"] == ["get", "list", "watch", "delete"]
    schemas = discovery.openapi_v3()["components"]["schemas"]
    assert schemas[discovery.SCHEMA_NAME]["x-kubernetes-group-version-kind"] == discovery.GVK


def test_expose_transcripts_is_off_unless_set() -> None:
    assert parse_pool_spec(samples.pool()["spec"]).expose_transcripts is False
    assert parse_pool_spec(samples.pool(session={"exposeTranscripts": True})["spec"]).expose_transcripts
    with pytest.raises(SpecError, match="exposeTranscripts must be a boolean"):
        parse_pool_spec(samples.pool(session={"exposeTranscripts": "yes"})["spec"])


def test_a_record_is_parsed_again_only_when_redis_returns_another() -> None:
    reader = SessionReader(RedisClients())
    pool = o.PoolRef("team-a", "alpha", "redis://x")
    data = SessionRecord.new("abc", 600, "", "team-a.alpha").model_dump_json()
    first = reader._session(pool, "abc", [data, "agent-1", None])
    assert first is not None and reader._session(pool, "abc", [data, "agent-1", None]) is first
    moved = reader._session(pool, "abc", [data, "agent-2", None])
    assert moved is not first and moved is not None and moved.owner == "agent-2"
    assert reader._session(pool, "abc", [None, "agent-2", "1"]) is None
