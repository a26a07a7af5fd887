"""`python -m voice_agent`: start one agent (settings from the environment, see docs/configuration.md)."""

from __future__ import annotations

import gc
import logging
import socket
import sys

import uvicorn

from voice_agent.settings import ConfigError, Settings, load_settings
from voice_agent.telemetry.logs import configure_logging


def check_redis(settings: Settings) -> None:
    if settings.redis_url is None or not settings.redis_enabled:
        return
    from voice_agent.store.redis import check_url

    problem = check_url(settings.redis_url.get_secret_value())
    if problem:
        raise ConfigError(f"invalid setting REDIS_URL: {problem}")


def bind_listener(host: str, port: int) -> socket.socket:
    """The HTTP port, taken before the start-up work rather than after it.

    uvicorn binds only once the lifespan has run (decoders loaded, media warmed: a second or more).
    Meanwhile the port is free for anyone, an outgoing connection's ephemeral port included, and
    the agent would then exit with "address already in use" after its start-up work. Bound (not
    yet listening) it is reserved, and a connection to it is still refused until the agent serves.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"voice_agent: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return sock


def main() -> None:
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        listener = bind_listener(settings.host, settings.port)
        check_redis(settings)
        from voice_agent.server.app import create_app

        app = create_app(settings)
    except ConfigError as exc:
        print(f"voice_agent: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from voice_agent.server.drain import DrainingServer
    from voice_agent.server.http_protocol import with_header_timeout

    logging.getLogger(__name__).info(
        "listening",
        extra={"host": settings.host, "port": settings.port, "url": f"http://localhost:{settings.port}"},
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=1024 * 1024,
        timeout_graceful_shutdown=10,
        lifespan="on",
        http=with_header_timeout(settings.request_timeout_s),
    )
    # What is built by now (modules, routes, providers: ~95,000 objects) lives as long as the process.
    # Frozen, a full collection no longer walks it: that walk took 80-130 ms of the event loop, and
    # the outbound audio stalled with it.
    gc.collect()
    gc.freeze()
    DrainingServer(config, lambda: app.state.manager.drain(settings.drain_timeout_s)).run(sockets=[listener])


if __name__ == "__main__":
    main()
