"""Fixtures of the deployment checks: rendered overlays and examples (cached per worker)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import Obj, operator_rendered, render


@pytest.fixture(params=["overlays/dev", "overlays/prod"])
def overlay(request: pytest.FixtureRequest) -> list[Obj]:
    return render(str(request.param))


@pytest.fixture
def examples() -> list[Obj]:
    return render("examples")


@pytest.fixture
def cluster_objects(overlay: list[Obj], examples: list[Obj]) -> list[Obj]:
    """An overlay plus the examples plus what the operator renders for them: all that runs."""
    return overlay + examples + operator_rendered(examples)
