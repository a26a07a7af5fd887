"""A rollout nobody hears: a pool replaced agent by agent under live calls that keep talking.

Redis and three agents behind the round-robin balancer of bench/liveness.py (its pool, balancer and
load generator, reused), 30 calls from WebRTC clients that follow the close codes
(`VoiceClient(resume=True)`) and ask a spoken question every 30 s. Then the agents are replaced one
by one as the Deployment rolls them (`maxSurge: 1, maxUnavailable: 0`): a new agent up and ready,
the old one taken out of the balancer's rotation at the moment of its SIGTERM (Kubernetes removes a
terminating pod's endpoints while its preStop sleeps; a balancer command, not a wait for its
probes), and the old one waited for until it exits. A draining agent moves each call at its next
turn boundary (docs/deploy.md, "Rolling a pool"); the client reconnects through the balancer and
the call goes on elsewhere.

What it counts (docs/reliability.md, "A rollout nobody hears"):
- dropped calls: a call told to stop or to start a new session, or whose socket is not open at the
  end (its conversation lost);
- questions left unanswered: no final reply within 20 s of asking, a reply over the reconnected
  socket included;
- the audio gap of each moved call, on the client: from the last audio frame it received from the
  old agent to the first one from the agent that took the call over (an agent sends audio, silence
  included, every 20 ms while a call is up, so this is the time no audio reached the user);
- each old agent's exit after SIGTERM; moves by outcome (`voice_migrations_total`, read from each
  agent until it exits).

`python -m bench.rollout [--calls 30] [--quick]`. Results: bench/results/rollout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from bench.common import cpu_seconds, pct, write
from bench.liveness import (
    Call,
    Pool,
    calls_up,
    counter,
    finished,
    load_command,
    pool_under_load,
    start_load,
)
from voice_agent.media.receive import install_buffer
from voice_agent.protocol.signaling import CloseAction, ErrorCode
from voice_agent.testing.client import VoiceClient

AGENTS = 3
# Long enough that no call waits for it: an agent that exits does so because its calls moved.
DRAIN_TIMEOUT_S = 300.0
# The load generator's own bound; SIGUSR1 ends it once the rollout and its tail are over.
MAX_MINUTES = 30.0
GAP_TARGET_MS, EXIT_TARGET_S = 500.0, 15.0
# One spoken question per call this often: 30 calls ask one a second in all. The offline agents (speech
# recognized and synthesized on their own cores) carry about two calls per core at one question every
# 10-20 s (docs/performance.md, "Sizing a pool"); three of them, a fourth starting and the 30 clients
# share two cores here, and a pool this overloaded would measure its overload, not a rollout.
QUESTION_EVERY_S = 30.0


def log(msg: str) -> None:
    print(f"[bench.rollout] {msg}", flush=True)


# --- the client's side of a move -----------------------------------------------------------------


class _Arrivals:
    """Stands in for the jitter buffer of the receiver of the agent's audio on one peer connection:
    notes when its first and its latest packet came, and lets none through, so nothing is decoded.
    The load generator needs when audio reached the user, not what it said, and decoding 30 calls'
    audio is a large share of its CPU on the cores the agents use too."""

    capacity = 16  # what aiortc reads of a jitter buffer besides add()

    def __init__(self, client: TimedClient, span: list[float]) -> None:
        self.client, self.span = client, span

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        now = time.monotonic()
        self.span[:] = [self.span[0] if self.span else now, now]
        self.client.audio_arrived(now)
        return False, None


@dataclass
class Move:
    at: float  # the close that moved the call
    tracks_before: int  # peer connections whose audio had started by then


# A move's gap on the client, stage by stage: each stage ends at the first of its mark after the move's
# close. "told": the agent's close (its call stopped, its record saved and released) after the last audio
# it sent; "session": the reconnect through the balancer and the new agent's claim; "offer": the client's
# new peer and its offer; "answer": the new agent's peer and answer; "media": ICE and DTLS; "audio": the
# first audio frame after media is up.
STAGES = ("told", "session", "offer", "answer", "media", "audio")


class TimedClient(VoiceClient):
    """A load client that keeps, per peer connection, its audio's first and latest frame, and the
    closes that moved its call (`session_moved` then 1012), so each move's gap can be read after."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spans: list[list[float]] = []
        self.moves: list[Move] = []
        self.open_at_end = False
        self.offers: list[float] = []
        self.media_up: list[float] = []

    def _on_track(self, track: MediaStreamTrack) -> None:
        """The track comes with the answer, before ICE starts: in time for its states and its packets."""
        span: list[float] = []
        self.spans.append(span)
        pc = self.pc
        assert pc is not None

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self.media_up.append(time.monotonic())

        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        if not install_buffer(receiver, _Arrivals(self, span)):
            raise RuntimeError("aiortc's receiver has no jitter buffer to stand in for")

    def audio_arrived(self, now: float) -> None:
        """What VoiceClient notes of each frame it decodes, for its stall watch (testing/client.py)."""
        self.frames_received += 1
        self._last_frame = now
        self.silence.heard(now, "audio", wake=True)

    async def send(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "offer":
            self.offers.append(time.monotonic())
        await super().send(msg)

    def _closed(self, code: int | None) -> None:
        since = max((c.at for c in self.closes), default=0.0)
        told = any(
            e["type"] == "error" and e.get("code") == ErrorCode.SESSION_MOVED and e["_at"] >= since
            for e in self.events
        )
        if code == 1012 and told:
            self.moves.append(Move(time.monotonic(), len(self.spans)))
        super()._closed(code)

    async def close(self) -> None:
        self.open_at_end = self.ws is not None and self.ws.close_code is None
        await super().close()

    def _event_after(self, kind: str, t: float) -> float | None:
        return next((e["_at"] for e in self.events if e["type"] == kind and e["_at"] >= t), None)

    def gaps_ms(self) -> tuple[list[float], int, list[dict[str, float]]]:
        """Each move's gap (ms), the moves after which no audio came back, and each gap's stages (ms)."""
        gaps, silent, stages = [], 0, []
        for move in self.moves:
            before = [s for s in self.spans[: move.tracks_before] if s]
            after = [s for s in self.spans[move.tracks_before :] if s]
            if not before or not after:
                silent += 1
                continue
            last, first = before[-1][1], after[0][0]
            gaps.append(round((first - last) * 1000, 1))
            session = self._event_after("session", move.at)
            offer = next((t for t in self.offers if session is not None and t >= session), None)
            answer = self._event_after("answer", offer) if offer is not None else None
            media = next((t for t in self.media_up if answer is not None and t >= answer), None)
            marks = [last, move.at, session, offer, answer, media, first]
            if all(m is not None for m in marks):
                ends: list[float] = [m for m in marks if m is not None]
                steps = zip(STAGES, ends[:-1], ends[1:], strict=True)
                stages.append({k: round((b - a) * 1000, 1) for k, a, b in steps})
        return gaps, silent, stages


def _dropped(client: TimedClient) -> bool:
    by_agent = [c for c in client.closes if not c.ended_by_client and not c.dropped]
    lost = any(c.action in (CloseAction.STOP, CloseAction.NEW_SESSION) for c in by_agent)
    return client.stopped or client.new_sessions > 0 or lost or not client.open_at_end


def move_figures(calls: list[Call]) -> dict[str, Any]:
    """The rollout's own figures from the clients, beside bench.liveness's (closes, turns, silences)."""
    clients = [c.client for c in calls if isinstance(c.client, TimedClient)]
    gaps: list[float] = []
    stages: list[dict[str, float]] = []
    silent = 0
    for client in clients:
        g, s, st = client.gaps_ms()
        gaps += g
        silent += s
        stages += st
    return {
        "dropped_calls": sum(1 for c in clients if _dropped(c)),
        "unanswered": sum(c.failed + c.cut for c in calls),
        "moves_seen_by_clients": sum(len(c.moves) for c in clients),
        "calls_moved": sum(1 for c in clients if c.moves),
        "moves_without_audio_after": silent,
        "gap_ms": {
            "p50": round(pct(gaps, 50), 1) if gaps else None,
            "p95": round(pct(gaps, 95), 1) if gaps else None,
            "max": max(gaps, default=None),
            "n": len(gaps),
        },
        "gaps_ms": sorted(gaps),
        "gap_stages_ms": {
            k: {"p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1)}
            for k in STAGES
            if (v := [st[k] for st in stages])
        },
        "gap_stages_n": len(stages),
    }


# --- the run -------------------------------------------------------------------------------------


# Each outcome of voice_migrations_total has its log line (sessions/manager.py): the logs are complete,
# while the last read of a draining agent's metrics can come before its last moves.
LOGGED = {"moved": '"call moved"', "failed": '"moving a call failed"', "no_room": '"no room elsewhere'}


def agent_moves(pool: Pool) -> dict[str, Any]:
    logs = [p.logs() for p in pool.agents.values()]
    logged = {k: sum(text.count(line) for text in logs) for k, line in LOGGED.items()}
    outcomes: dict[str, float] = {}
    for m in pool.metrics.values():
        for k, v in m.items():
            if k.startswith('voice_migrations_total{outcome="'):
                outcome = k.split('"')[1]
                outcomes[outcome] = outcomes.get(outcome, 0.0) + v
    gap_n = sum(counter(m, "voice_migration_gap_seconds_count") or 0 for m in pool.metrics.values())
    gap_sum = sum(counter(m, "voice_migration_gap_seconds_sum") or 0 for m in pool.metrics.values())
    return {
        "migrations": {k: int(v) for k, v in sorted(outcomes.items())},
        "migrations_logged": {k: n for k, n in logged.items() if n},
        "agent_gap_mean_ms": round(gap_sum / gap_n * 1000, 1) if gap_n else None,
    }


async def measure(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = {"voice_drain_timeout_s": f"{opts.drain_timeout_s:g}"}
    out, load_log = tmp / "clients.json", tmp / "clients.log"
    async with pool_under_load(tmp, AGENTS, 0, 0, env) as (pool, url, t0):
        originals = sorted(pool.agents)
        loadgen = start_load(url, opts, out, load_log, module="bench.rollout")
        try:
            await asyncio.wait_for(asyncio.to_thread(calls_up, loadgen, load_log), 300)
            log(f"{opts.calls} calls up after {time.monotonic() - t0:.0f}s")
            started = time.monotonic()
            load_before, clients_cpu = os.getloadavg()[0], cpu_seconds(loadgen.pid)
            await asyncio.sleep(opts.before_s)  # the calls talk before the rollout: part of the scenario
            steps: list[dict[str, Any]] = []
            for old in originals:
                step = await pool.replace(old, opts.drain_timeout_s, take_out=True)
                steps.append({"agent": old, "at_s": round(time.monotonic() - started, 1), **step})
                log(f"replaced {old}: {step}")
            await asyncio.sleep(opts.after_s)  # and after it, on the new agents
            await pool.scrape()
            clients_cores = (cpu_seconds(loadgen.pid) - clients_cpu) / (time.monotonic() - started)
            loadgen.send_signal(signal.SIGUSR1)
            clients = await asyncio.to_thread(finished, loadgen, out, load_log)
            elapsed = time.monotonic() - started
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
    exits = [s["exit_after_sigterm_s"] for s in steps]
    return {
        "agents": AGENTS,
        "calls": opts.calls,
        "question_every_s": opts.every_s,
        "drain_timeout_s": opts.drain_timeout_s,
        "seconds": round(elapsed, 1),
        # What the clients cost the machine they share with the agents (cores, while the calls talked).
        "clients_cpu_cores": round(clients_cores, 2),
        "load_average_at_start": round(load_before, 2),
        "rollout": steps,
        "exit_after_sigterm_s": {"max": max(exits), "all": exits},
        "exited_by_themselves": sum(int(s["exited_by_itself"]) for s in steps),
        **agent_moves(pool),
        **clients,
    }


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as d:
        try:
            return await measure(opts, Path(d))
        finally:
            if opts.logs:  # kept whatever happened: a failed run is the one whose logs matter
                ignore = shutil.ignore_patterns("redis")
                await asyncio.to_thread(shutil.copytree, d, opts.logs, dirs_exist_ok=True, ignore=ignore)


def _gap(d: dict[str, Any]) -> str:
    g = d["gap_ms"]
    return "none moved" if g["p50"] is None else f"{g['p50']:g} / {g['p95']:g} / {g['max']:g} (n={g['n']})"


def _clients_cpu(d: dict[str, Any]) -> str:
    if "clients_cpu_cores" not in d:
        return "not measured"
    return f"{d['clients_cpu_cores']:g} / {d['load_average_at_start']:g}"


def _stages(d: dict[str, Any]) -> str:
    stages = d.get("gap_stages_ms") or {}
    if not stages:
        return "not measured"
    parts = [f"{stages[k]['p50']:g} / {stages[k]['p95']:g}" for k in STAGES if k in stages]
    return ", ".join(parts) + f" (n={d['gap_stages_n']})"


def _joined(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none"


def report(d: dict[str, Any]) -> str:
    """The table for the console and docs/reliability.md."""
    exits = " / ".join(f"{s:g}" for s in d["exit_after_sigterm_s"]["all"])
    turns = d["turns"]
    rows = [
        ("calls dropped", str(d["dropped_calls"]), "0"),
        ("questions left unanswered (no reply within 20 s)", str(d["unanswered"]), "0"),
        ("questions answered", str(turns["ok"]), "-"),
        ("audio gap per moved call, p50 / p95 / max (ms, client)", _gap(d), f"p95 <= {GAP_TARGET_MS:g}"),
        (
            "old agents' exit after SIGTERM (s, each)",
            f"{exits} ({d['exited_by_themselves']} of {len(d['rollout'])} by themselves)",
            f"<= {EXIT_TARGET_S:g}",
        ),
        (
            "moves by outcome: agents' voice_migrations_total (last read before exit) / their logs",
            f"{_joined(d['migrations'])} / {_joined(d['migrations_logged'])}",
            "-",
        ),
        (
            "moves seen by clients / calls moved / moves after which no audio came",
            f"{d['moves_seen_by_clients']} / {d['calls_moved']} / {d['moves_without_audio_after']}",
            "- / - / 0",
        ),
        (
            "agents' closes by code / reconnects / renegotiations",
            f"{_joined(d['closes'])} / {d['reconnects']} / {d['renegotiations']}",
            "-",
        ),
        ("a moved call's gap by stage, p50 / p95 (ms): " + ", ".join(STAGES), _stages(d), "-"),
        (
            "the clients' own CPU (cores, all calls in one process) / load average at the start",
            _clients_cpu(d),
            "-",
        ),
    ]
    head = (
        f"| {d['calls']} calls on {d['agents']} agents, a question every {d['question_every_s']:g} s, "
        f"{len(d['rollout'])} agents replaced in {d['seconds']:g} s | measured | target |"
    )
    return "\n".join([head, "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def main() -> int:
    if sys.argv[1:2] == ["load"]:
        load_command(sys.argv[2:7], kind=TimedClient, extra=move_figures, across_closes=True)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--every-s", type=float, help=f"a question per call this often ({QUESTION_EVERY_S:g} s)")
    ap.add_argument("--before-s", type=float, default=30.0, help="talk this long before the rollout")
    ap.add_argument("--after-s", type=float, default=30.0, help="and this long after it")
    ap.add_argument("--drain-timeout-s", type=float, default=DRAIN_TIMEOUT_S)
    ap.add_argument("--quick", action="store_true", help="6 calls, a question every 10 s, short talks")
    ap.add_argument("--out", help="write the results here instead of bench/results/rollout.json")
    ap.add_argument("--logs", help="keep the agents', balancer's and clients' logs here")
    opts = ap.parse_args()
    opts.minutes = MAX_MINUTES
    if opts.quick:
        opts.calls, opts.before_s, opts.after_s = 6, 10.0, 10.0
    # A smoke run's few calls ask more often, so that some questions meet a move.
    opts.every_s = opts.every_s or (10.0 if opts.quick else QUESTION_EVERY_S)
    data = asyncio.run(run(opts))
    print(report(data))
    print(f"wrote {write('rollout', data, opts.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
