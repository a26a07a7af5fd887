"""Run every benchmark module in turn, each in its own process so one crash does not hide the rest.

Each module `bench/<area>.py` prints a table and writes `bench/results/<area>.json`; the figures
quoted in docs/ come from those files, which are committed. Then every target (bench/targets.py) is
checked against the result files: a missed target, or a figure that is missing, makes the run
fail. `python -m bench agent redis` runs a subset.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench import report, targets

HERE = Path(__file__).parent
# Not benchmarks: plumbing, the probe, sender and voices they use, and two run by hand: ab (compares two
# commits) and operator_client (a decision record that needs a client the project does not depend on).
SKIP = {
    "__init__",
    "__main__",
    "common",
    "ab",
    "operator_client",
    "targets",
    "report",
    "probe",
    "sender",
    "voices",
}


def modules() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in SKIP and not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    wanted = argv or modules()
    unknown = sorted(set(wanted) - set(modules()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(modules())}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for index, name in enumerate(wanted, 1):
        print(f"==> [{index}/{len(wanted)}] bench.{name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        outcome = "ok" if code == 0 else f"FAILED ({code})"
        print(f"==> bench.{name} {outcome} in {time.monotonic() - started:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    print("==> the docs' figures, rewritten from bench/results/ (bench.report)", flush=True)
    for block in report.sync():
        print(f"rewritten: {block}", flush=True)
    print("==> targets (bench/targets.py) against bench/results/", flush=True)
    missed = targets.report()
    return 1 if failed or missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
