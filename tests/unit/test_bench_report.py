"""The docs' figure blocks: written from the committed result files and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import MissingResults, sync


def doc(tmp_path: Path, name: str, body: str = "old figures\n") -> Path:
    path = tmp_path / "doc.md"
    path.write_text(f"# Measured\n\n<!-- bench:{name} -->\n{body}<!-- /bench -->\n\nAfter.\n")
    return path


def test_the_docs_agree_with_the_committed_results() -> None:
    """A figure edited by hand, or a result file committed without `python -m bench.report`, fails."""
    assert sync(check=True) == []


def test_a_block_naming_an_unknown_generator_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no-such-block"):
        sync([doc(tmp_path, "no-such-block")], results=tmp_path, check=True)


def test_a_block_whose_results_file_is_missing_fails(tmp_path: Path) -> None:
    with pytest.raises(MissingResults, match=r"turn\.json is missing"):
        sync([doc(tmp_path, "turn")], results=tmp_path, check=True)


def test_check_reports_a_stale_block_without_writing_and_a_sync_rewrites_only_the_block(
    tmp_path: Path,
) -> None:
    s = {"n": 3, "p50": 1.0, "p95": 2.0, "p99": 3.0, "mean": 1.5}
    results = tmp_path / "results"
    results.mkdir()
    (results / "turn.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": 2, "cpu_model": "CPU", "load_average_1m": 0.5},
                "commit": "0123456789abcdef",
                "date": "2026-01-01T00:00:00Z",
                **{mode: {"setup_ms": s, "voice_to_voice_ms": s} for mode in ("relay", "direct")},
            }
        )
    )
    path = doc(tmp_path, "turn")
    before = path.read_text()
    assert sync([path], results=results, check=True) == [f"{path}: turn"]
    assert path.read_text() == before

    assert sync([path], results=results) == [f"{path}: turn"]
    after = path.read_text()
    assert "old figures" not in after
    assert "| Session created → media connected | 1 / 2 / 3 ms | 1 / 2 / 3 ms |" in after
    assert "commit `0123456789`" in after
    assert after.startswith("# Measured\n\n<!-- bench:turn -->\n") and after.endswith(
        "<!-- /bench -->\n\nAfter.\n"
    )
    assert sync([path], results=results, check=True) == []
