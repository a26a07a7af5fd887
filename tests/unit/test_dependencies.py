"""Every third-party module the agent or the operator imports, at the top of a file or inside a
function, is declared in pyproject.toml for the images that run it: the agent's in the base
dependencies or the agent and cloud extras (Dockerfile.agent), the operator's in the base
dependencies or the operator extra (Dockerfile.operator). A package that only arrives as some
other package's dependency, or only with the dev extra, can vanish from an image without notice."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OURS = {"voice_agent", "voice_operator"}
IMAGES = {"agent/voice_agent": ("agent", "cloud"), "operator/voice_operator": ("operator",)}


def declared(extras: tuple[str, ...]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(s for e in extras for s in project["optional-dependencies"][e])]
    return {canonicalize_name(Requirement(s).name) for s in specs}


def imported(package: Path) -> dict[str, str]:
    """Top-level module -> the first file importing it, for every absolute import."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {m: p for m, p in found.items() if m not in sys.stdlib_module_names and m not in OURS}


@pytest.mark.parametrize("package", sorted(IMAGES))
def test_every_runtime_import_is_declared_for_its_image(package: str) -> None:
    allowed = declared(IMAGES[package])
    distributions = packages_distributions()
    missing = {
        f"{module} ({where})": distributions.get(module, ["?"])
        for module, where in imported(ROOT / package).items()
        if not {canonicalize_name(d) for d in distributions.get(module, [])} & allowed
    }
    assert not missing, f"declare in pyproject.toml ({', '.join(IMAGES[package])} or base): {missing}"
