"""The agent's HTTP port: taken at once, and a taken port stops the agent with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.procs import ROOT, AgentProcess

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_a_port_in_use_stops_the_agent_with_one_line() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        full = {**os.environ, "VOICE_HOST": "127.0.0.1", "VOICE_PORT": str(port)}
        proc = subprocess.run(
            [sys.executable, "-m", "voice_agent"],
            env=full,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"voice_agent: cannot listen on 127.0.0.1:{port}: Address already in use"], proc.stderr


def test_the_port_is_the_agents_from_its_first_log_line(tmp_path: Path) -> None:
    """Reserved before the start-up work (decoders, media warm-up), not after it, so nothing else takes it."""
    agent = AgentProcess({}, tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 30
        while '"listening"' not in agent.logs():
            assert agent.proc.poll() is None, agent.logs()
            assert time.monotonic() < deadline, "no listening line within 30 s"
            time.sleep(0.01)
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", agent.port))
        agent.wait_ready()
    finally:
        agent.stop()
