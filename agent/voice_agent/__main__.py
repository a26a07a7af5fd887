"""`python -m voice_agent`: start one agent (settings from the environment, see DESIGN.md)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from voice_agent.logs import configure_logging
from voice_agent.settings import ConfigError, load_settings


def main() -> None:
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        from voice_agent.app import create_app

        app = create_app(settings)
    except ConfigError as exc:
        print(f"voice_agent: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.getLogger(__name__).info(
        "listening",
        extra={"host": settings.host, "port": settings.port, "url": f"http://localhost:{settings.port}"},
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=1024 * 1024,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
