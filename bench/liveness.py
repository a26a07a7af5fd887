"""Liveness under load: a pool on a saturated machine, rolled over, whose calls must never sit in silence.

Three agents on one Redis behind a round-robin balancer (a TCP proxy that, like a Service, sends each
new connection to the next agent that is registered and ready) take the calls of clients that ask a
spoken question every few seconds and follow the close codes (`VoiceClient(resume=True)`). A CPU
burner per core keeps both cores saturated for the run and no longer. Partway through, the agents
are replaced one by one the way a Deployment rolls: a new agent, registered and ready, then SIGTERM
to an old one, which drains (`VOICE_DRAIN_TIMEOUT_S`) and exits.

What it measures (docs/reliability.md, "Liveness under load"):
- live agents declared dead: a watcher reads Redis every 100 ms and applies the pool's own rule
  (alive key and inbox listener, store/redis_scripts.py) to every agent whose process runs and was
  not told to stop; beside it the agents' own count of lapsed leases and fenced takeovers;
- the longest silence a client sat in before it was told anything (an event, a close, or its own
  stall detector; `Silence` in testing/client.py), and how the long ones ended;
- each agent's event-loop lag (p99 from `voice_event_loop_lag_seconds`, the longest stall from
  its "event loop stalled" lines), and the load generator's own;
- closes by code, and closes that contradict docs/api.md (a close that says "stop" or "new
  session" to a client that ended nothing);
- turns answered, failed, and cut by a reconnect; reconnects, renegotiations, media stalls.

`python -m bench.liveness [--minutes 10] [--calls 12] [--quick]`. Results: bench/results/liveness.json;
`--agents-from COMMIT --name liveness-before` runs the agents of an older commit against the same
load (clients, balancer and watcher stay this checkout's), for the before/after table.
`python -m bench.liveness balance PORT REDIS_URL` is the balancer process on its own; a line
`out HOST:PORT` on its stdin takes that agent out of the rotation (answered on stdout), as Kubernetes
removes a terminating pod's endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio

from bench.common import pct, write
from tests.redis.servers import RedisServer, agent_id_of, redis_server, start_agents
from tests.support.procs import AgentProcess, free_port, wait_http
from tests.support.prom import scrape
from tests.support.speech import synth
from tests.support.waits import until
from voice_agent.protocol.signaling import CloseAction
from voice_agent.store import keys
from voice_agent.telemetry.loop import LoopMonitor
from voice_agent.testing.client import VoiceClient

POOL = "default"
PHRASES = ["what time is it", "hello there", "please tell me a joke", "what day is it"]
TURN_TIMEOUT_S = 20.0
WATCH_EVERY_S = 0.1
SCRAPE_EVERY_S = 5.0
# A draining agent's metrics are read this often until it exits, so its last moves are counted.
DRAIN_SCRAPE_S = 0.5
# The figure the targets hold: a client told within this long of the agent going quiet.
SILENCE_TARGET_S = 2.0
LOADGEN_NICE = -5
# Starting an agent (its speech models) takes seconds of CPU, on saturated cores many more.
AGENT_READY_S = 120.0
# The balancer is a Python process too: its imports alone take seconds on saturated cores.
BALANCER_READY_S = 60.0
# How long past its drain timeout an agent may take to exit on a saturated machine (its shutdown
# gives connections up to 10 s, then closes its calls and Redis, each step as slow as the loop).
EXIT_SLACK_S = 60.0
CALLS_UP = "calls up"
PROBE_EVERY_S, PROBE_TIMEOUT_S, PROBE_FAILURES = 1.0, 1.0, 3
BURN = (
    "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
)
_STALL = re.compile(r'"msg": "event loop stalled".*?"lag_ms": (\d+)')


def log(msg: str) -> None:
    print(f"[bench.liveness] {msg}", flush=True)


# --- the machine's load --------------------------------------------------------------------------


@contextlib.contextmanager
def burners(seconds: float, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Busy processes, each ending by itself after `seconds` even if this one dies."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN, str(seconds)]) for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


# --- the balancer --------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def balance(port: int, redis_url: str, pool: str = POOL) -> None:
    """Round robin over the pool's registered agents that pass their readiness probe, probed as a
    Kubernetes Service's endpoints are: every PROBE_EVERY_S, PROBE_TIMEOUT_S each, out of the
    rotation after PROBE_FAILURES failures in a row, back in after one success."""
    failures: dict[tuple[str, int], int] = {}
    ready: list[tuple[str, int]] = []
    removed: set[tuple[str, int]] = set()
    turn = itertools.count()
    store = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)

    async def probe(http: httpx.AsyncClient, url: str) -> None:
        host, _, agent_port = url.removeprefix("http://").partition(":")
        address = (host, int(agent_port))
        try:
            ok = (await http.get(url + "/ready")).status_code == 200
        except httpx.HTTPError:
            ok = False
        failures[address] = 0 if ok else failures.get(address, PROBE_FAILURES) + 1

    async def refresh() -> None:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as http:
            while True:
                agents = [str(a) for a in await store.zrange(keys.agents_key(pool), 0, -1)]
                urls = [str(await store.hget(keys.agent_key(pool, a), "url") or "") for a in agents]
                await asyncio.gather(*(probe(http, url) for url in urls if url))
                ready[:] = sorted(a for a, n in failures.items() if n < PROBE_FAILURES and a not in removed)
                await asyncio.sleep(PROBE_EVERY_S)

    async def commands() -> None:
        """`out HOST:PORT`: out of the rotation at once and for good (a terminating pod's endpoint is
        removed whatever its probe says); existing connections stay, as with kube-proxy."""
        while line := await asyncio.to_thread(sys.stdin.readline):
            verb, _, target = line.strip().partition(" ")
            host, _, agent_port = target.rpartition(":")
            if verb == "out" and agent_port.isdigit():
                removed.add((host, int(agent_port)))
                ready[:] = [a for a in ready if a not in removed]
                print(f"out {target}", flush=True)
            else:
                print(f"unknown command {line.strip()!r}", flush=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not ready:
            writer.close()
            return
        host, agent_port = ready[next(turn) % len(ready)]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, agent_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    refresher = asyncio.create_task(refresh())
    commander = asyncio.create_task(commands())
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await asyncio.gather(server.serve_forever(), refresher, commander)


@dataclass
class Balancer:
    url: str
    proc: subprocess.Popen[bytes]

    def take_out(self, agent_url: str) -> None:
        """The agent leaves the rotation before this returns: the balancer has answered."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        target = agent_url.removeprefix("http://").rstrip("/")
        self.proc.stdin.write(f"out {target}\n".encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().strip()
        if answer != f"out {target}":
            raise RuntimeError(f"the balancer did not take {target} out: {answer!r}")


@contextlib.contextmanager
def balancer(server: RedisServer, workdir: Path) -> Iterator[Balancer]:
    port = free_port()
    out = open(workdir / "balancer.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.liveness", "balance", str(port), server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=out,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", BALANCER_READY_S, proc)
        yield Balancer(url, proc)
    finally:
        proc.terminate()
        proc.wait(10)
        out.close()


# --- the watcher ---------------------------------------------------------------------------------


@dataclass
class Death:
    agent: str
    at_s: float
    lasted_s: float
    why: str


class Watcher:
    """Applies the pool's liveness rule to every agent that should be alive, every WATCH_EVERY_S."""

    def __init__(self, server: RedisServer, t0: float) -> None:
        self.client = server.client()
        self.t0 = t0
        self.expected: set[str] = set()
        self.deaths: list[Death] = []
        self.min_lease_left_ms: float | None = None
        self._open: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness-watcher", daemon=True)

    def alive(self, agent: str) -> None:
        with self._lock:
            self.expected.add(agent)

    def stopping(self, agent: str) -> None:
        """The agent was told to stop: from now on its going is no false death."""
        with self._lock:
            self.expected.discard(agent)
            self._close(agent, time.monotonic())

    def _close(self, agent: str, now: float) -> None:
        if (opened := self._open.pop(agent, None)) is not None:
            start, why = opened
            self.deaths.append(Death(agent, round(start - self.t0, 2), round(now - start, 2), why))

    def _check(self, agents: list[str]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.pttl(keys.agent_alive_key(POOL, agent))
            pipe.pubsub_numsub(*(keys.agent_inbox(POOL, a) for a in agents))
            rows = pipe.execute()
        listening = {name: int(n) for name, n in rows[-1]}
        now = time.monotonic()
        with self._lock:
            for agent, left in zip(agents, rows[:-1], strict=True):
                if agent not in self.expected:
                    continue
                if left > 0:
                    self.min_lease_left_ms = min(self.min_lease_left_ms or left, left)
                why = "lease expired" if left < 0 else ""
                if not listening.get(keys.agent_inbox(POOL, agent)):
                    why = why or "inbox not heard"
                if why and agent not in self._open:
                    self._open[agent] = (now, why)
                elif not why:
                    self._close(agent, now)

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            with self._lock:
                agents = sorted(self.expected)
            if agents:
                with contextlib.suppress(redis.RedisError):
                    self._check(agents)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        now = time.monotonic()
        for agent in list(self._open):
            self._close(agent, now)


# --- the pool ------------------------------------------------------------------------------------


@dataclass
class Pool:
    """The agents of the run, the ones replaced included, with what was read from each."""

    tmp: Path
    server: RedisServer
    watcher: Watcher
    env: dict[str, str]
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    generation: int = 0
    lb: Balancer | None = None

    def start(self, count: int) -> list[str]:
        prefix = f"gen{self.generation}"
        started = start_agents(self.tmp, self.server, count, prefix, AGENT_READY_S, **self.env)
        self.generation += 1
        ids = []
        for agent in started:
            agent_id = agent_id_of(agent)
            self.agents[agent_id] = agent
            self.watcher.alive(agent_id)
            ids.append(agent_id)
        return ids

    def running(self) -> dict[str, AgentProcess]:
        return {a: p for a, p in self.agents.items() if p.proc.poll() is None}

    async def scrape(self) -> None:
        for agent_id, proc in self.running().items():
            with contextlib.suppress(httpx.HTTPError):
                self.metrics[agent_id] = await scrape(proc.url)

    async def replace(self, old: str, drain_timeout_s: float, take_out: bool = False) -> dict[str, float]:
        """One step of a rollout: a new agent up, then the old one drained and gone. `take_out`: the
        balancer drops the old agent at SIGTERM, as Kubernetes removes its endpoint (without it, the
        readiness probes find it unready within PROBE_FAILURES seconds). The old agent is read
        while it drains, its last figures (its moves) kept."""
        t0 = time.monotonic()
        await asyncio.to_thread(self.start, 1)
        up = time.monotonic() - t0
        await self.scrape()
        proc = self.agents[old]
        self.watcher.stopping(old)
        if take_out:
            assert self.lb is not None, "the balancer is started with the pool"
            await asyncio.to_thread(self.lb.take_out, proc.url)
        sigterm = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        waiting = asyncio.create_task(asyncio.to_thread(proc.proc.wait, drain_timeout_s + EXIT_SLACK_S))
        while not waiting.done():
            with contextlib.suppress(httpx.HTTPError):
                self.metrics[old] = await scrape(proc.url)
            await asyncio.wait({waiting}, timeout=DRAIN_SCRAPE_S)
        try:
            waiting.result()
            exited = 1.0
        except subprocess.TimeoutExpired:  # a drain that never ends is a finding, not a crash
            log(f"{old} still running {drain_timeout_s + EXIT_SLACK_S:g} s after SIGTERM; killed")
            proc.proc.kill()
            exited = 0.0
        return {
            "new_agent_up_s": round(up, 1),
            "old_agent_gone_s": round(time.monotonic() - t0 - up, 1),
            "exit_after_sigterm_s": round(time.monotonic() - sigterm, 2),
            "exited_by_itself": exited,
        }

    def stop(self) -> None:
        for agent_id, proc in self.agents.items():
            self.watcher.stopping(agent_id)
            with contextlib.suppress(Exception):
                proc.stop()


# --- the calls -----------------------------------------------------------------------------------


@dataclass
class Call:
    client: VoiceClient
    ok: int = 0
    failed: int = 0
    cut: int = 0


async def open_call(url: str, kind: type[VoiceClient] = VoiceClient) -> Call:
    client = kind(url, record=False, resume=True)
    await client.create_session()
    await client.connect()
    await client.wait_media(timeout=60)
    return Call(client)


@dataclass
class Deadline:
    """When the calls stop asking; moved earlier by SIGUSR1 to the load generator (a run that ends
    when its scenario does, not after a fixed time)."""

    at: float


def _final(e: dict[str, Any]) -> bool:
    return e["type"] == "ai_response" and e.get("final") is True


async def _reply(client: VoiceClient, mark: int, across_closes: bool) -> bool:
    """Whether the question asked at event `mark` was answered within TURN_TIMEOUT_S; `across_closes`:
    the answer may come over the socket the client reconnects (a moved call's)."""
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while True:
        try:
            await client.wait_for(_final, max(0.0, deadline - time.monotonic()), mark)
            return True
        except TimeoutError:
            if not across_closes or client.stopped or time.monotonic() >= deadline:
                return False
        try:  # closed: wait for the reconnect, then for the answer on the new socket
            await until(
                lambda: client.ws is not None and client.close_code is None,
                max(0.0, deadline - time.monotonic()),
                "a reconnected socket",
            )
        except TimeoutError:
            return False


async def converse(
    call: Call, index: int, of: int, every_s: float, until_: Deadline, across_closes: bool = False
) -> None:
    """A spoken question every `every_s`, staggered across calls; a turn a reconnect cut is counted apart."""
    await asyncio.sleep(every_s * index / of)
    n = 0
    while time.monotonic() + every_s / 2 < until_.at:
        started = time.monotonic()
        client = call.client
        pcm, rate = synth(PHRASES[(index + n) % len(PHRASES)])
        n += 1
        mark, closes = len(client.events), len(client.closes)
        client.say(pcm, rate)
        if await _reply(client, mark, across_closes):
            call.ok += 1
        elif len(client.closes) > closes or client.close_code is not None:
            call.cut += 1
        else:
            call.failed += 1
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


# --- reading the agents --------------------------------------------------------------------------


def lag_quantile(m: dict[str, float], q: float) -> float | None:
    """histogram_quantile over `voice_event_loop_lag_seconds` (linear within the bucket), in ms."""
    buckets = sorted(
        (float(k.split('le="')[1].rstrip('"}')), v)
        for k, v in m.items()
        if k.startswith("voice_event_loop_lag_seconds_bucket")
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return round(lower * 1000, 1)
            share = (rank - below) / (count - below) if count > below else 0.0
            return round((lower + (upper - lower) * share) * 1000, 1)
        lower, below = upper, count
    return None


def counter(m: dict[str, float], name: str) -> float | None:
    """The counter's total; None when the agent does not export it (agents of an older commit)."""
    values = [v for k, v in m.items() if k.split("{")[0] == name]
    return sum(values) if values else None


def total(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def agent_figures(pool: Pool) -> dict[str, Any]:
    per_agent: dict[str, dict[str, Any]] = {}
    for agent_id, proc in pool.agents.items():
        text = proc.logs()
        stalls = [int(ms) for ms in _STALL.findall(text)]
        m = pool.metrics.get(agent_id, {})
        per_agent[agent_id] = {
            "lag_p99_ms": lag_quantile(m, 0.99),
            "lag_max_ms": max(stalls, default=0),
            "stalls_over_500ms": len(stalls),
            "lease_lapses": counter(m, "voice_redis_lease_lapses_total"),
            "media_stalls": counter(m, "voice_media_stalls_total"),
            "fenced_takeovers": text.count("session taken over by another agent"),
        }
    merged: dict[str, float] = {}
    for m in pool.metrics.values():
        for k, v in m.items():
            if k.startswith("voice_event_loop_lag_seconds_bucket"):
                merged[k] = merged.get(k, 0.0) + v
    return {
        "per_agent": per_agent,
        "lag_p99_ms": lag_quantile(merged, 0.99),
        "lag_max_ms": max((a["lag_max_ms"] for a in per_agent.values()), default=0),
        "lease_lapses": total([a["lease_lapses"] for a in per_agent.values()]),
        "media_stalls": total([a["media_stalls"] for a in per_agent.values()]),
        "fenced_takeovers": sum(a["fenced_takeovers"] for a in per_agent.values()),
    }


def client_figures(calls: list[Call]) -> dict[str, Any]:
    clients = [c.client for c in calls]
    closes = [x for c in clients for x in c.closes]
    spans = [s for c in clients for s in c.silence.long_spans]
    by_agent = [x for x in closes if not x.ended_by_client and not x.dropped]
    contradicting = [x.code for x in by_agent if x.action in (CloseAction.STOP, CloseAction.NEW_SESSION)]
    return {
        "longest_silence_s": round(max((c.silence.longest_s for c in clients), default=0.0), 3),
        "longest_quiet_socket_s": round(max((c.quiet_socket.longest_s for c in clients), default=0.0), 3),
        "silences_over_target": sum(1 for s in spans if s[1] > SILENCE_TARGET_S),
        "long_silences_ended_by": dict(Counter(s[2].split(" ")[0] for s in spans)),
        "long_silences": sorted(spans, key=lambda s: -s[1])[:20],
        "closes": dict(Counter(str(x.code) for x in by_agent)),
        "sockets_dropped_as_dead": sum(1 for x in closes if x.dropped),
        "contradicting_closes": len(contradicting),
        "stopped_calls": sum(1 for c in clients if c.stopped),
        "reconnects": sum(c.reconnects for c in clients),
        "new_sessions": sum(c.new_sessions for c in clients),
        "renegotiations": sum(c.renegotiations for c in clients),
        "media_stalls_seen_by_clients": sum(c.media_stalls for c in clients),
        "turns": {
            "ok": sum(c.ok for c in calls),
            "failed": sum(c.failed for c in calls),
            "cut_by_reconnect": sum(c.cut for c in calls),
        },
    }


# --- the run -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pool_under_load(
    tmp: Path, agents: int, burn_s: float, burn: int, env: dict[str, str]
) -> AsyncIterator[tuple[Pool, str, float]]:
    """Redis, `agents` agents, the balancer and the burners; yields the pool, the balancer's URL and t0."""
    t0 = time.monotonic()
    with redis_server(tmp / "redis") as server, Watcher(server, t0) as watcher:
        pool = Pool(tmp, server, watcher, env)
        try:
            await asyncio.to_thread(pool.start, agents)
            with balancer(server, tmp) as pool.lb, burners(burn_s, burn):
                yield pool, pool.lb.url, t0
        finally:
            pool.stop()


async def load(
    url: str,
    calls: int,
    every_s: float,
    seconds: float,
    kind: type[VoiceClient] = VoiceClient,
    extra: Callable[[list[Call]], dict[str, Any]] | None = None,
    across_closes: bool = False,
) -> dict[str, Any]:
    """The calls, in a process of their own: they stand for browsers on other machines, so they run
    ahead of the burners (LOADGEN_NICE) and see the agents' stalls rather than their own. SIGUSR1 ends
    the run early (each call finishes its question); `extra` adds figures read from the calls;
    `across_closes`: a question's answer may come after a close, on the reconnected socket."""
    logging.getLogger("voice_agent.telemetry.loop").setLevel(logging.ERROR)  # its lag is in the results
    own_lag = LoopMonitor(keep=True)
    own_lag.start()
    for phrase in PHRASES:
        synth(phrase)
    live = list(await asyncio.gather(*(open_call(url, kind) for _ in range(calls))))
    print(CALLS_UP, flush=True)
    end = Deadline(time.monotonic() + seconds)
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: setattr(end, "at", time.monotonic())
    )
    try:
        await asyncio.gather(
            *(converse(c, i, len(live), every_s, end, across_closes) for i, c in enumerate(live))
        )
    finally:
        await asyncio.gather(*(c.client.close() for c in live), return_exceptions=True)
    await own_lag.stop()
    lag = own_lag.samples or [0.0]
    return {
        **client_figures(live),
        **(extra(live) if extra is not None else {}),
        "load_generator_nice": os.getpriority(os.PRIO_PROCESS, 0),
        "load_generator_lag_ms": {"p99": round(pct(lag, 99) * 1000, 1), "max": round(max(lag) * 1000, 1)},
    }


def start_load(
    url: str, opts: argparse.Namespace, out: Path, log_path: Path, module: str = "bench.liveness"
) -> subprocess.Popen[bytes]:
    """`module`'s `load` command: this one's, or a benchmark's that reuses `load` with its own client."""
    args = ["load", url, str(opts.calls), str(opts.every_s), str(opts.minutes * 60), str(out)]
    with open(log_path, "wb") as errors:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=errors)


def calls_up(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Blocks until the load generator says its calls are up; it gives up by itself when they are not."""
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if line.decode().strip() == CALLS_UP:
            return
    raise RuntimeError(f"the load generator failed: {log_path.read_text()[-2000:]}")


def finished(proc: subprocess.Popen[bytes], out: Path, log_path: Path) -> dict[str, Any]:
    if proc.wait() != 0:
        raise RuntimeError(f"the load generator failed: {log_path.read_text()[-2000:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def agents_of(commit: str, tree: Path) -> str:
    """The agent package of `commit`, unpacked under `tree`; returns the full commit id."""
    root = Path(__file__).resolve().parents[1]
    full = subprocess.run(["git", "rev-parse", commit], cwd=root, capture_output=True, text=True, check=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", full.stdout.strip(), "agent"], cwd=root, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return full.stdout.strip()


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    env = {"voice_drain_timeout_s": str(opts.drain_timeout_s)}
    with tempfile.TemporaryDirectory(prefix="bench-liveness-") as d:
        tmp = Path(d)
        if opts.agents_from:
            opts.agents_commit = await asyncio.to_thread(agents_of, opts.agents_from, tmp / "agents")
            env["pythonpath"] = str(tmp / "agents" / "agent")
        try:
            return await measure(opts, tmp, env)
        finally:
            if opts.logs:  # kept whatever happened: a failed run is the one whose logs matter
                ignore = shutil.ignore_patterns("redis", "agents")
                await asyncio.to_thread(shutil.copytree, tmp, opts.logs, dirs_exist_ok=True, ignore=ignore)


async def measure(opts: argparse.Namespace, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    seconds = opts.minutes * 60
    out, load_log = tmp / "clients.json", tmp / "clients.log"
    async with pool_under_load(tmp, 3, seconds + 300, opts.burners, env) as (pool, url, t0):
        originals = sorted(pool.agents)
        loadgen = start_load(url, opts, out, load_log)
        try:
            await asyncio.wait_for(asyncio.to_thread(calls_up, loadgen, load_log), 300)
            log(f"{opts.calls} calls up after {time.monotonic() - t0:.0f}s; talking for {seconds:.0f}s")
            started = time.monotonic()
            rollout: list[dict[str, float]] = []
            while loadgen.poll() is None:
                await asyncio.to_thread(_wait, loadgen)
                await pool.scrape()
                if not rollout and time.monotonic() - started >= seconds * opts.rollout_at:
                    log("rollout: replacing the agents one by one")
                    for old in originals:
                        step = await pool.replace(old, opts.drain_timeout_s)
                        rollout.append({"at_s": round(time.monotonic() - t0, 1), **step})
                        log(f"  replaced {old}: {step}")
                log(f"t={time.monotonic() - started:.0f}s deaths={len(pool.watcher.deaths)}")
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
        elapsed = time.monotonic() - started
        clients = await asyncio.to_thread(finished, loadgen, out, load_log)
    return results(opts, elapsed, rollout, pool, clients)


def _wait(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(SCRAPE_EVERY_S)


def results(
    opts: argparse.Namespace,
    elapsed: float,
    rollout: list[dict[str, float]],
    pool: Pool,
    clients: dict[str, Any],
) -> dict[str, Any]:
    watcher = pool.watcher
    return {
        "agents": 3,
        "calls": opts.calls,
        "seconds": round(elapsed, 1),
        "question_every_s": opts.every_s,
        "drain_timeout_s": opts.drain_timeout_s,
        "burners": opts.burners,
        "agents_commit": getattr(opts, "agents_commit", None) or "this checkout",
        "rollout": rollout,
        "declared_dead": len(watcher.deaths),
        "deaths": [vars(x) for x in watcher.deaths],
        "min_lease_left_ms": watcher.min_lease_left_ms,
        **agent_figures(pool),
        **clients,
    }


def _joined(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none"


def _known(value: float | None) -> str:
    return "not measured" if value is None else f"{value:g}"


def _lag(d: dict[str, Any]) -> str:
    """Agents from before the lag metric have no figure to show."""
    return f"{d['lag_p99_ms']} / {d['lag_max_ms']}" if d.get("lag_p99_ms") is not None else "not measured"


# (figure, how it reads from a result, target): the rows of the table, in order.
ROWS: list[tuple[str, Any, str]] = [
    ("live agents declared dead (watcher, the pool's rule)", lambda d: str(d["declared_dead"]), "0"),
    (
        "leases found lapsed / calls fenced from a live owner",
        lambda d: f"{_known(d['lease_lapses'])} / {d['fenced_takeovers']}",
        "0 / 0",
    ),
    ("least lease left at any check (ms)", lambda d: f"{d['min_lease_left_ms'] or '-'}", "-"),
    (
        "longest silence a client sat in before it was told (s)",
        lambda d: f"{d['longest_silence_s']:g}",
        f"<= {SILENCE_TARGET_S:g}",
    ),
    (
        f"silences over {SILENCE_TARGET_S:g} s / those over 1 s, by what ended them",
        lambda d: f"{d['silences_over_target']} / {_joined(d['long_silences_ended_by'])}",
        "0 / -",
    ),
    (
        "longest an open socket carried no event (s; a question goes out every few seconds)",
        lambda d: f"{d['longest_quiet_socket_s']:g}" if "longest_quiet_socket_s" in d else "not measured",
        "-",
    ),
    ("closes contradicting docs/api.md", lambda d: str(d["contradicting_closes"]), "0"),
    (
        "closes by the agents, by code / sockets the clients dropped as dead",
        lambda d: f"{_joined(d['closes'])} / {d['sockets_dropped_as_dead']}",
        "-",
    ),
    ("calls told to stop", lambda d: str(d["stopped_calls"]), "0"),
    (
        "replaced agents that exited by themselves after SIGTERM",
        lambda d: f"{sum(int(r.get('exited_by_itself', 1)) for r in d['rollout'])} of {len(d['rollout'])}",
        "all",
    ),
    ("event-loop lag of the agents, p99 / longest stall (ms)", _lag, "-"),
    (
        "the load generator's own loop lag p99 / max (ms)",
        lambda d: f"{d['load_generator_lag_ms']['p99']} / {d['load_generator_lag_ms']['max']}",
        "-",
    ),
    (
        "media stalls detected by the agents / by the clients",
        lambda d: f"{_known(d['media_stalls'])} / {d['media_stalls_seen_by_clients']}",
        "-",
    ),
    (
        "reconnects / renegotiations / new sessions",
        lambda d: f"{d['reconnects']} / {d['renegotiations']} / {d['new_sessions']}",
        "- / - / 0",
    ),
    (
        "turns answered / failed / cut by a close",
        lambda d: f"{d['turns']['ok']} / {d['turns']['failed']} / {d['turns']['cut_by_reconnect']}",
        "-",
    ),
]


def _setup(d: dict[str, Any]) -> str:
    return (
        f"{d['calls']} calls on {d['agents']} agents + {d['burners']} CPU burner(s), {d['seconds']:g} s, "
        f"{len(d['rollout'])} agents replaced"
    )


def report(d: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The table for the console and docs/reliability.md; with `before`, a run of older agents beside it."""
    if before is None:
        out = [f"| {_setup(d)} | measured | target |", "|---|---|---|"]
        out += [f"| {what} | {read(d)} | {target} |" for what, read, target in ROWS]
        return "\n".join(out)
    old = str(before["agents_commit"])[:10]
    out = [
        f"| figure | agents of `{old}`: {_setup(before)} | this commit: {_setup(d)} | target |",
        "|---|---|---|---|",
    ]
    out += [f"| {what} | {read(before)} | {read(d)} | {target} |" for what, read, target in ROWS]
    return "\n".join(out)


def load_command(argv: list[str], **kw: Any) -> None:
    """`load URL CALLS EVERY_S SECONDS OUT` (start_load's command line): the calls, their figures to OUT."""
    url, calls, every_s, seconds, out = argv
    with contextlib.suppress(PermissionError):  # a negative nice needs root
        os.setpriority(os.PRIO_PROCESS, 0, LOADGEN_NICE)
    figures = asyncio.run(load(url, int(calls), float(every_s), float(seconds), **kw))
    Path(out).write_text(json.dumps(figures))


def main() -> int:
    if sys.argv[1:2] == ["balance"]:
        asyncio.run(balance(int(sys.argv[2]), sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["load"]:
        load_command(sys.argv[2:7])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--calls", type=int, default=12)
    ap.add_argument("--every-s", type=float, default=6.0, help="a question per call this often")
    ap.add_argument("--rollout-at", type=float, default=0.4, help="share of the run before the rollout")
    ap.add_argument("--drain-timeout-s", type=float, default=15.0)
    ap.add_argument("--burners", type=int, default=1, help="busy processes beside the agents and the calls")
    ap.add_argument("--agents-from", help="run the agents of this commit (a before/after comparison)")
    ap.add_argument("--name", default="liveness", help="results file: bench/results/<name>.json")
    ap.add_argument("--quick", action="store_true", help="2 minutes: a smoke run")
    ap.add_argument("--out", help="write the results here instead of bench/results/liveness.json")
    ap.add_argument("--logs", help="keep the agents', balancer's and load generator's logs here")
    opts = ap.parse_args()
    if opts.quick:
        opts.minutes = 2.0
    data = asyncio.run(run(opts))
    print(report(data))
    print(f"wrote {write(opts.name, data, opts.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
