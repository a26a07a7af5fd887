"""Read the agent's Prometheus exposition the way Prometheus would."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(base_url: str) -> dict[str, float]:
    """Sample name (with labels rendered) -> value."""
    async with httpx.AsyncClient(timeout=5) as http:
        return parse((await http.get(base_url + "/metrics")).text)


def scrape_sync(base_url: str) -> dict[str, float]:
    """`scrape` for code outside an event loop."""
    return parse(httpx.get(base_url + "/metrics", timeout=5).text)


def parse(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out
