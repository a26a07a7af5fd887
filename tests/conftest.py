"""Every test keeps its media on loopback, and a guard fails any test whose media did not.

aioice leaves loopback out of its host candidates, so without this the test clients and agents
would send RTP over the machine's own external address. VOICE_ICE_ADDRESSES=127.0.0.1 is the
setting an operator would use to pin candidates; agent subprocesses inherit it, and the Python
client reads the same setting. The guard reads the pair each agent selected from its log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.procs import STARTED, off_loopback

os.environ["VOICE_ICE_ADDRESSES"] = "127.0.0.1"


@pytest.fixture(autouse=True)
def media_stays_on_loopback() -> Iterator[None]:
    marks = {id(agent): agent.log_size() for agent in STARTED}
    yield
    off = off_loopback([pair for agent in STARTED for pair in agent.ice_pairs(since=marks.get(id(agent), 0))])
    if off:
        pytest.fail(f"media left loopback: the agent selected {off[0]}", pytrace=False)
