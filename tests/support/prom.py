"""Read the agent's Prometheus exposition the way Prometheus would."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(base_url: str) -> dict[str, float]:
    """Sample name (with labels rendered) -> value."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(base_url + "/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out
