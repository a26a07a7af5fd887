"""Real processes for integration tests: free loopback ports, an agent subprocess, bounded waits."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


# Every agent this test process started, so the loopback guard can read what each one selected.
STARTED: list[AgentProcess] = []


def off_loopback(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Selected pairs with an end off loopback (what the test guard refuses)."""
    return [p for p in pairs if p.get("local") != "loopback" or p.get("remote") != "loopback"]


class AgentProcess:
    # A free port is released before the agent binds it, so another process can take it meanwhile;
    # the agent then exits at once saying so, and is started again on a fresh port.
    PORT_TAKEN = "address already in use"
    STARTS = 3

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        STARTED.append(self)
        self.env = env
        self.log_path = log_path
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "VOICE_HOST": "127.0.0.1",
            "VOICE_PORT": str(self.port),
            "VOICE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voice_agent"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def _port_taken(self) -> bool:
        return self.proc.poll() is not None and self.PORT_TAKEN in self.logs().lower()

    def open_fds(self) -> int:
        """File descriptors the agent process holds now (sockets included)."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def wait_ready(self, timeout: float = 30.0) -> AgentProcess:
        for start in range(1, self.STARTS + 1):
            try:
                wait_http(self.url + "/health", timeout, self.proc)
                return self
            except (RuntimeError, TimeoutError) as exc:
                if start < self.STARTS and self._port_taken():
                    self._log.close()
                    self._start()
                    continue
                tail = "\n".join(self.logs().splitlines()[-15:])
                raise RuntimeError(f"{exc}\n--- agent log tail ---\n{tail}") from None
        raise AssertionError("unreachable")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def ice_pairs(self, since: int = 0) -> list[dict[str, str]]:
        """The agent's "ice pair selected" lines written after byte `since` of its log."""
        if not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        pairs = []
        for line in text.splitlines():
            if '"ice pair selected"' in line:
                with contextlib.suppress(ValueError):
                    pairs.append(json.loads(line))
        return pairs

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def running_agent(tmp_path: Path, **env: str) -> Iterator[AgentProcess]:
    agent = AgentProcess({k.upper(): v for k, v in env.items()}, tmp_path / f"agent-{free_port()}.log")
    try:
        yield agent.wait_ready()
    finally:
        agent.stop()
    off = off_loopback(agent.ice_pairs())
    if off:
        raise RuntimeError(f"media left loopback: the agent selected {off[0]}")
