"""Before and after: one benchmark module run on two commits, alternately, on one machine in one sitting.

A change that must not make things worse (a refactor, a new guard) is judged by running the same
benchmark on the commit before it and on this one, interleaved so that a machine that gets busier
or quieter over the sitting affects both sides alike:

    python -m bench.ab --before <commit> --name <name> [--rounds 2] -- --parts latency barge-in

The commit before is checked out in a temporary git worktree and run with this checkout's Python
environment. Each round runs the module once per side; every run's result file is kept, and
`bench/results/ab-<name>.json` holds them all with the machine, both commits and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import git_commit, write

ROOT = Path(__file__).resolve().parents[1]


def run_side(tree: Path, module: str, args: list[str], out: Path) -> dict[str, Any]:
    """One run of `bench.<module>` in `tree`, its results written under `out`.

    A commit older than BENCH_RESULTS_DIR writes into its own (temporary) tree instead.
    """
    fallback = tree / "bench" / "results" / f"{module}.json"
    fallback.unlink(missing_ok=True)
    paths = [tree / "agent", tree / "operator", tree]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "BENCH_RESULTS_DIR": str(out)}
    subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=tree, env=env, check=True)
    result = out / f"{module}.json"
    data: dict[str, Any] = json.loads((result if result.exists() else fallback).read_text())
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the commit to compare against")
    ap.add_argument("--name", required=True, help="names the result file: bench/results/ab-<name>.json")
    ap.add_argument("--module", default="agent", help="benchmark module (bench.<module>)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="after --: arguments for the module")
    opts = ap.parse_args()
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    before = subprocess.run(
        ["git", "rev-parse", opts.before], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as d:
        tree = Path(d) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), before], cwd=ROOT, check=True)
        try:
            for r in range(opts.rounds):
                for side, where in (("before", tree), ("after", ROOT)):
                    print(f"==> round {r + 1}/{opts.rounds}: {side}", flush=True)
                    out = Path(d) / f"{side}-{r}"
                    runs[side].append(run_side(where, opts.module, args, out))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    path = write(
        f"ab-{opts.name}",
        {"module": opts.module, "args": args, "before": before, "after": git_commit(), "runs": runs},
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
