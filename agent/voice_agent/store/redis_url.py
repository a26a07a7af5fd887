"""Redis addresses: one server's URL, or a Sentinel group naming the primary (docs/redis.md, "Connection").

redis-py has clients for both but a URL form only for the first. The Sentinel form is the one other
clients share, so one URL (one Secret) serves the agent, the operator and any tool:

    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]
    rediss+sentinel://...   TLS to the Sentinels and to the data nodes alike

The user and password are the data nodes' (the same ACL user as with one server); `sentinel_username`
and `sentinel_password` authenticate to the Sentinels when they require it; every other option is a
redis-py URL option for the data nodes, and on TLS its `ssl_*` options apply to the Sentinels too (one
CA covers the group). Sentinels default to port 26379.

Clients built here ask the Sentinels for the primary at every new connection, so after a promotion
the next connection (a retried command, a resubscription) lands on the new primary, and a connection
still open on a demoted one fails its first write (READONLY) instead of writing there.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis as sync_redis
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import parse_url as parse_async_url
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry as SyncRetry

SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
SENTINEL_PORT = 26379
_SENTINEL_AUTH = {"sentinel_username": "username", "sentinel_password": "password"}
_PLACEHOLDER_HOST = "primary.invalid"
# A connection's handshake is HELLO (and AUTH/SELECT) only: no CLIENT SETINFO, no CLIENT
# MAINT_NOTIFICATIONS (a managed-cloud feature). Servers before 7.2 answer both with an error, and
# redis-py pipelines SETINFO unread: an event loop that stalls past the health-check interval mid-
# handshake sends a health-check PING whose read takes that error, and the command that opened the
# connection (a session's save) fails with "unknown subcommand 'SETINFO'", which no retry covers. What
# SETINFO sets is only a label in CLIENT LIST.
_PLAIN_HANDSHAKE: dict[str, Any] = {
    "driver_info": None,
    "maint_notifications_config": MaintNotificationsConfig(enabled=False),
}


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed Sentinel URL; `node_url` carries the data nodes' options in redis-py's own URL form."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    node_url: str = field(repr=False)  # may carry the password
    tls: bool
    sentinel_auth: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """Where, without secrets (for logs and errors)."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"primary {self.service!r} of the Sentinels {hosts}"


def is_sentinel(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelUrl | None:
    """The Sentinel form, or None for a plain redis:// / rediss:// URL; ValueError names what is wrong."""
    scheme, _, rest = url.partition("://")
    base = SENTINEL_SCHEMES.get(scheme.lower())
    if base is None:
        return None
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    sentinels = tuple(_host_port(h) for h in hosts.split(",") if h.strip())
    if not sentinels:
        raise ValueError(
            "a Sentinel URL lists at least one Sentinel: redis+sentinel://host:26379,.../service"
        )
    service, _, db = path.partition("/")
    if not service:
        raise ValueError(
            "a Sentinel URL names the primary's service: redis+sentinel://host:26379/SERVICE[/db]"
        )
    if db and not db.isdigit():
        raise ValueError(f"the database after the service must be a number, not {db!r}")
    options = parse_qsl(query, keep_blank_values=False)
    auth = {_SENTINEL_AUTH[k]: v for k, v in options if k in _SENTINEL_AUTH}
    node_query = urlencode([(k, v) for k, v in options if k not in _SENTINEL_AUTH])
    node_url = f"{base}://{userinfo}{at}{_PLACEHOLDER_HOST}/{db or 0}" + (
        f"?{node_query}" if node_query else ""
    )
    return SentinelUrl(sentinels, service, node_url, tls=base == "rediss", sentinel_auth=auth)


def _host_port(raw: str) -> tuple[str, int]:
    raw = raw.strip()
    if raw.startswith("["):  # [IPv6]:port
        host, _, port = raw[1:].partition("]")
        port = port.removeprefix(":")
    elif raw.count(":") == 1:
        host, _, port = raw.partition(":")
    else:
        host, port = raw, ""
    if not host or (port and not port.isdigit()):
        raise ValueError(f"bad Sentinel address {raw!r} (host[:port])")
    return host, int(port) if port else SENTINEL_PORT


def describe(url: str) -> str:
    """The server a URL points at, without its secrets."""
    target = parse_sentinel(url)
    if target is not None:
        return target.describe()
    kwargs = parse_async_url(url)
    return f"redis {kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _node_kwargs(target: SentinelUrl, **overrides: Any) -> dict[str, Any]:
    """Data-node connection options parsed by redis-py, minus the placeholder address."""
    kwargs: dict[str, Any] = dict(parse_async_url(target.node_url))
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    kwargs.pop("connection_class", None)
    kwargs.update(overrides)
    return kwargs


def _sentinel_kwargs(target: SentinelUrl, node: dict[str, Any], retry: Any) -> dict[str, Any]:
    """The Sentinels' connections: the same timeouts, their own auth, the nodes' TLS settings, and
    `retry` (none: discovery goes on to the next Sentinel, where redis-py's default retries with
    backoff would hold a start-up check or a health probe for many seconds per Sentinel)."""
    kwargs = {k: v for k, v in node.items() if k.startswith("socket_")}
    kwargs["retry"] = retry
    kwargs.update(_PLAIN_HANDSHAKE)
    kwargs.update(target.sentinel_auth)
    kwargs["decode_responses"] = True
    if target.tls:
        kwargs["ssl"] = True
        kwargs.update({k: v for k, v in node.items() if k.startswith("ssl_")})
    return kwargs


# --- asyncio --------------------------------------------------------------------------------------
class _Sentinels(Sentinel):
    """Names what each Sentinel said when none offers a usable primary (one pass, same timeouts)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        reports: list[str] = []
        for i, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"Sentinel {kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: Any = await sentinel.sentinel_masters()
            except (ConnectionError, TimeoutError) as exc:
                reports.append(f"{where} unreachable ({type(exc).__name__}: {exc})")
                continue
            state = masters.get(service_name)
            if not state:
                reports.append(f"{where} does not monitor {service_name!r}")
            elif not self.check_master_state(state, service_name):
                down = "down" if state.get("is_sdown") or state.get("is_odown") else "not usable"
                reports.append(f"{where} names {state['ip']}:{state['port']}, {down}")
            else:
                self.sentinels[0], self.sentinels[i] = sentinel, self.sentinels[0]
                return str(state["ip"]), int(state["port"])
        raise MasterNotFoundError(f"no usable primary for {service_name!r}: " + "; ".join(reports))


class _PrimaryConnectionMixin:
    """A connection error to the primary says that the Sentinels named it (the address alone misleads:
    it changes at a failover)."""

    connection_pool: Any

    async def connect_to(self, address: tuple[str, int]) -> None:
        try:
            await super().connect_to(address)  # type: ignore[misc]
        except (ConnectionError, TimeoutError, OSError) as exc:
            host, port = address
            raise ConnectionError(
                f"primary {host}:{port}, named by the Sentinels for {self.connection_pool.service_name!r}, "
                f"is unreachable ({type(exc).__name__}: {exc})"
            ) from exc


class _PrimaryConnection(_PrimaryConnectionMixin, SentinelManagedConnection):
    pass


class _PrimarySSLConnection(_PrimaryConnectionMixin, SentinelManagedSSLConnection):
    pass


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Discovers the primary like SentinelConnectionPool and, like BlockingConnectionPool, lets a burst
    wait for a connection instead of failing."""


def async_client(url: str, *, blocking_timeout_s: float | None = None, **kwargs: Any) -> aioredis.Redis:
    """A client for either URL form. `blocking_timeout_s`: a pool whose callers wait up to that long
    for a free connection (None: one that refuses past max_connections). `kwargs` are redis-py's."""
    kwargs = {**_PLAIN_HANDSHAKE, **kwargs}
    target = parse_sentinel(url)
    if target is None:
        if blocking_timeout_s is None:
            return aioredis.Redis(connection_pool=ConnectionPool.from_url(url, **kwargs))
        return aioredis.Redis(
            connection_pool=BlockingConnectionPool.from_url(url, timeout=blocking_timeout_s, **kwargs)
        )
    node = _node_kwargs(target, **kwargs)
    manager = _Sentinels(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target, node, AsyncRetry(NoBackoff(), 0))
    )
    connection_class = _PrimarySSLConnection if target.tls else _PrimaryConnection
    pool: SentinelConnectionPool
    if blocking_timeout_s is None:
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            target.service, manager, connection_class=connection_class, **node
        )
    else:
        pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
            target.service, manager, connection_class=connection_class, timeout=blocking_timeout_s, **node
        )
    return aioredis.Redis(connection_pool=pool)


def primary_address(client: aioredis.Redis) -> str | None:
    """The primary the Sentinels last named to this client (None: a plain URL, or not asked yet)."""
    pool = client.connection_pool
    address = getattr(pool, "master_address", None) if isinstance(pool, SentinelConnectionPool) else None
    return f"{address[0]}:{address[1]}" if address else None


async def close_client(client: aioredis.Redis) -> None:
    """Closes the client, its pool and, for a Sentinel URL, the connections to the Sentinels."""
    await client.aclose()
    pool = client.connection_pool
    await pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


# --- blocking (threads and start-up checks) ------------------------------------------------------
def sync_client(url: str, timeout_s: float, **kwargs: Any) -> sync_redis.Redis:
    """A blocking client for either URL form; every connect and read bounded by timeout_s."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": True,
        **_PLAIN_HANDSHAKE,
        **kwargs,
    }
    target = parse_sentinel(url)
    if target is None:
        return sync_redis.Redis.from_url(url, **options)
    # One fresh-connection retry, as the agents' async client: a new connection asks the Sentinels.
    node = _node_kwargs(target, **{"retry": SyncRetry(NoBackoff(), 1), **options})
    if target.tls:
        node["ssl"] = True
    manager = sync_redis.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target, node, SyncRetry(NoBackoff(), 0))
    )
    client: sync_redis.Redis = manager.master_for(target.service, **node)  # type: ignore[no-untyped-call]
    _SYNC_MANAGERS[client] = manager
    return client


_SYNC_MANAGERS: weakref.WeakKeyDictionary[sync_redis.Redis, sync_redis.Sentinel] = weakref.WeakKeyDictionary()


def close_sync_client(client: sync_redis.Redis) -> None:
    client.close()
    manager = _SYNC_MANAGERS.pop(client, None)
    if manager is not None:
        for sentinel in manager.sentinels:
            with contextlib.suppress(Exception):
                sentinel.close()
