"""A rollout nobody hears: a pool replaced agent by agent under live calls that keep talking.

Redis and three agents behind the round-robin balancer of bench/liveness.py (its pool, balancer and
load generator, reused), 30 calls from WebRTC clients that follow the close codes
(`VoiceClient(resume=True)`) and ask a spoken question every 8 s. Then the agents are replaced one
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
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from bench.common import pct, write
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
from voice_agent.protocol.signaling import CloseAction, ErrorCode
from voice_agent.testing.client import VoiceClient

AGENTS = 3
# Long enough that no call waits for it: an agent that exits does so because its calls moved.
DRAIN_TIMEOUT_S = 300.0
# The load generator's own bound; SIGUSR1 ends it once the rollout and its tail are over.
MAX_MINUTES = 30.0
GAP_TARGET_MS, EXIT_TARGET_S = 500.0, 15.0


def log(msg: str) -> None:
    print(f"[bench.rollout] {msg}", flush=True)


# --- the client's side of a move -----------------------------------------------------------------


class _Timed(MediaStreamTrack):
    """The agent's track of one peer connection, noting when its first and its latest frame came."""

    kind = "audio"

    def __init__(self, track: MediaStreamTrack, span: list[float]) -> None:
        super().__init__()
        self.track, self.span = track, span

    async def recv(self) -> Any:
        frame = await self.track.recv()
        now = time.monotonic()
        self.span[:] = [self.span[0] if self.span else now, now]
        return frame


@dataclass
class Move:
    at: float  # the close that moved the call
    tracks_before: int  # peer connections whose audio had started by then


class TimedClient(VoiceClient):
    """A load client that keeps, per peer connection, its audio's first and latest frame, and the
    closes that moved its call (`session_moved` then 1012), so each move's gap can be read after."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spans: list[list[float]] = []
        self.moves: list[Move] = []
        self.open_at_end = False

    def _on_track(self, track: MediaStreamTrack) -> None:
        span: list[float] = []
        self.spans.append(span)
        super()._on_track(_Timed(track, span))

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

    def gaps_ms(self) -> tuple[list[float], int]:
        """Each move's gap (ms), and the moves after which no audio came back."""
        gaps, silent = [], 0
        for move in self.moves:
            before = [s for s in self.spans[: move.tracks_before] if s]
            after = [s for s in self.spans[move.tracks_before :] if s]
            if not before or not after:
                silent += 1
                continue
            gaps.append(round((after[0][0] - before[-1][1]) * 1000, 1))
        return gaps, silent


def _dropped(client: TimedClient) -> bool:
    by_agent = [c for c in client.closes if not c.ended_by_client and not c.dropped]
    lost = any(c.action in (CloseAction.STOP, CloseAction.NEW_SESSION) for c in by_agent)
    return client.stopped or client.new_sessions > 0 or lost or not client.open_at_end


def move_figures(calls: list[Call]) -> dict[str, Any]:
    """The rollout's own figures from the clients, beside bench.liveness's (closes, turns, silences)."""
    clients = [c.client for c in calls if isinstance(c.client, TimedClient)]
    gaps: list[float] = []
    silent = 0
    for client in clients:
        g, s = client.gaps_ms()
        gaps += g
        silent += s
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
            await asyncio.sleep(opts.before_s)  # the calls talk before the rollout: part of the scenario
            steps: list[dict[str, Any]] = []
            for old in originals:
                step = await pool.replace(old, opts.drain_timeout_s, take_out=True)
                steps.append({"agent": old, "at_s": round(time.monotonic() - started, 1), **step})
                log(f"replaced {old}: {step}")
            await asyncio.sleep(opts.after_s)  # and after it, on the new agents
            await pool.scrape()
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
        "rollout": steps,
        "exit_after_sigterm_s": {"max": max(exits), "all": exits},
        "exited_by_themselves": sum(int(s["exited_by_itself"]) for s in steps),
        **agent_moves(pool),
        **clients,
    }


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as d:
        return await measure(opts, Path(d))


def _gap(d: dict[str, Any]) -> str:
    g = d["gap_ms"]
    return "none moved" if g["p50"] is None else f"{g['p50']:g} / {g['p95']:g} / {g['max']:g} (n={g['n']})"


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
    ap.add_argument("--every-s", type=float, default=8.0, help="a question per call this often")
    ap.add_argument("--before-s", type=float, default=30.0, help="talk this long before the rollout")
    ap.add_argument("--after-s", type=float, default=30.0, help="and this long after it")
    ap.add_argument("--drain-timeout-s", type=float, default=DRAIN_TIMEOUT_S)
    ap.add_argument("--quick", action="store_true", help="6 calls, short talks: a smoke run")
    ap.add_argument("--out", help="write the results here instead of bench/results/rollout.json")
    opts = ap.parse_args()
    opts.minutes = MAX_MINUTES
    if opts.quick:
        opts.calls, opts.before_s, opts.after_s = 6, 10.0, 10.0
    data = asyncio.run(run(opts))
    print(report(data))
    if opts.out:
        Path(opts.out).write_text(json.dumps(data, indent=2) + "\n")
    else:
        print(f"wrote {write('rollout', data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
