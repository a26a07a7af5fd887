"""The VoiceAgentPool spec, with the CRD defaults applied (see fields.py)."""

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from voice_operator.fields import Problems, SpecError, mapping

# bufferSessions as a percentage of the active sessions (scaling.py reads it).
BUFFER_PERCENT = re.compile(r"^([0-9]{1,3})%$")
# spec.autoscaling.engine: what scales the agents' Deployment (docs/operator.md, "Autoscaling engines").
ENGINES = ("hpa", "keda")
# A Linux interface name (IFNAMSIZ - 1 characters); the agent reads the lists comma-separated.
_INTERFACE = re.compile(r"^[^,\s]{1,15}$")

# Which environment variables carry each cloud provider's key and base URL in the agent.
PROVIDER_ENV: Mapping[str, tuple[str, str]] = {
    "deepgram": ("DEEPGRAM_API_KEY", "DEEPGRAM_BASE_URL"),
    "groq": ("GROQ_API_KEY", "GROQ_BASE_URL"),
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "elevenlabs": ("ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL"),
}


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class Provider:
    role: str  # stt | llm | tts
    provider: str
    model: str | None
    base_url: str | None
    secret: SecretKeyRef | None


@dataclasses.dataclass(frozen=True)
class TurnServer:
    urls: tuple[str, ...]
    secret_name: str
    username_key: str
    credential_key: str


@dataclasses.dataclass(frozen=True)
class HostCandidates:
    """Where agents gather ICE host candidates and which address they announce to browsers.

    Empty lists leave the agent's own defaults (every non-loopback address); see docs/deploy.md
    for which setting fits multi-interface pods, the host network and 1:1 NAT.
    """

    interfaces: tuple[str, ...] = ()
    exclude_interfaces: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    exclude_addresses: tuple[str, ...] = ()
    announce_address: str | None = None
    announce_from_node: bool = False


@dataclasses.dataclass(frozen=True)
class TurnTaking:
    """spec.turn (named apart from `PoolSpec.turn`, the TURN relay): when the agents take the turn
    and what interrupts their replies. The defaults are the agent's own (docs/configuration.md) and
    the CRD's, so a pool that says nothing behaves as a bare agent does."""

    detector: str = "adaptive"
    min_silence_ms: int = 200
    max_silence_ms: int = 1600
    fixed_silence_ms: int = 500
    interruption: str = "classify"
    interruption_min_speech_ms: int = 700


# spec.turn's integer fields: (CRD name, TurnTaking field, minimum, maximum), as the CRD bounds them.
_TURN_MS: tuple[tuple[str, str, int, int], ...] = (
    ("minSilenceMs", "min_silence_ms", 100, 1000),
    ("maxSilenceMs", "max_silence_ms", 300, 5000),
    ("fixedSilenceMs", "fixed_silence_ms", 100, 5000),
    ("interruptionMinSpeechMs", "interruption_min_speech_ms", 100, 5000),
)
_TURN_CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("detector", ("adaptive", "fixed")),
    ("interruption", ("classify", "immediate")),
)


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    image: str
    image_pull_policy: str
    min_replicas: int
    max_replicas: int
    sessions_per_agent: int
    buffer_sessions: int | str
    cpu: str
    memory: str
    providers: tuple[Provider, ...]
    redis_url: str | None
    redis_secret: SecretKeyRef | None
    redis_tls: bool
    session_ttl_s: int
    drain_timeout_s: int
    service_type: str
    service_port: int
    session_affinity: str
    affinity_timeout_s: int
    service_annotations: Mapping[str, str]
    ice_servers: tuple[tuple[str, ...], ...]
    turn: TurnServer | None
    host_candidates: HostCandidates
    host_network: bool
    tuning_profile: str | None
    tolerations: tuple[Mapping[str, Any], ...]
    turn_taking: TurnTaking
    engine: str = "hpa"
    # spec.session.exposeTranscripts: what was said shows in `kubectl describe voicesession`.
    expose_transcripts: bool = False

    def secret_names(self) -> list[str]:
        """Every Secret the pool references (checked before rollout)."""
        names = [p.secret.name for p in self.providers if p.secret is not None]
        if self.redis_secret is not None:
            names.append(self.redis_secret.name)
        if self.turn is not None:
            names.append(self.turn.secret_name)
        return sorted(set(names))


def _int(raw: Any, field: str, default: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(f"{field} must be an integer")
    return raw


def _secret(raw: Any, field: str, default_key: str) -> SecretKeyRef | None:
    if raw is None:
        return None
    ref = mapping(raw, field)
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{field}.name is required")
    return SecretKeyRef(name=name, key=str(ref.get("key") or default_key))


def _list(raw: Any, field: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{field} must be a list")
    return raw


def _interfaces(raw: Any, field: str) -> tuple[str, ...]:
    names = _list(raw, field)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not _INTERFACE.match(name):
            raise SpecError(
                f"{field}[{i}] must be an interface name of 1-15 characters without commas or spaces, "
                f"got {name!r}"
            )
    return tuple(names)


def _parses(value: Any, parse: Callable[[str], object]) -> bool:
    # A zone (fe80::1%eth0) parses in Python but names an interface: that is what interfaces are for.
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _network(value: str) -> object:
    return ipaddress.ip_network(value, strict=False)


def _networks(raw: Any, field: str) -> tuple[str, ...]:
    values = _list(raw, field)
    for i, value in enumerate(values):
        if not _parses(value, _network):
            raise SpecError(f"{field}[{i}] must be an IP address or CIDR, got {value!r}")
    return tuple(values)


def _host_candidates(ice: Mapping[str, Any], host_network: bool) -> HostCandidates:
    given = ice.get("announce") is not None
    announce = mapping(ice.get("announce"), "spec.ice.announce")
    address, from_node = announce.get("address"), announce.get("fromNode", False)
    if not isinstance(from_node, bool):
        raise SpecError("spec.ice.announce.fromNode must be a boolean")
    if given and (address is None) == (not from_node):
        raise SpecError("spec.ice.announce needs exactly one of address or fromNode: true")
    if address is not None and not _parses(address, ipaddress.ip_address):
        raise SpecError(f"spec.ice.announce.address must be an IP address, got {address!r}")
    return HostCandidates(
        interfaces=_interfaces(ice.get("interfaces"), "spec.ice.interfaces"),
        exclude_interfaces=_interfaces(ice.get("excludeInterfaces"), "spec.ice.excludeInterfaces"),
        addresses=_networks(ice.get("addresses"), "spec.ice.addresses"),
        exclude_addresses=_networks(ice.get("excludeAddresses"), "spec.ice.excludeAddresses"),
        announce_address=address,
        # On the host network an agent sees every interface of its node (bridges, tunnels...):
        # unless told otherwise, it announces the address Kubernetes knows the node by.
        announce_from_node=from_node or (host_network and not given),
    )


def _turn_taking(raw: Any) -> TurnTaking:
    turn = mapping(raw, "spec.turn")
    defaults = TurnTaking()
    values: dict[str, Any] = {}
    for name, choices in _TURN_CHOICES:
        value = turn.get(name, getattr(defaults, name))
        if value not in choices:
            raise SpecError(f"spec.turn.{name} must be one of {', '.join(choices)}, got {value!r}")
        values[name] = value
    for name, field, low, high in _TURN_MS:
        value = _int(turn.get(name), f"spec.turn.{name}", getattr(defaults, field))
        if not low <= value <= high:
            raise SpecError(f"spec.turn.{name} must be between {low} and {high}, got {value}")
        values[field] = value
    if values["max_silence_ms"] <= values["min_silence_ms"]:
        raise SpecError("turn.maxSilenceMs must be greater than turn.minSilenceMs")
    return TurnTaking(**values)


def _quantity(raw: Any, field: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str) or str(raw) == "":
        raise SpecError(f"{field} must be a quantity")
    return str(raw)


def _flag(raw: Any, field: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise SpecError(f"{field} must be a boolean")
    return raw


def parse_pool_spec(raw: Mapping[str, Any]) -> PoolSpec:
    """The spec with its defaults, or a SpecError naming every problem it has."""
    problems = Problems()
    return problems.check(lambda: _read_pool_spec(raw, problems))


def _read_pool_spec(raw: Mapping[str, Any], problems: Problems) -> PoolSpec:
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        problems.add("spec.image is required")
    engine = mapping(raw.get("autoscaling"), "spec.autoscaling").get("engine", "hpa")
    if engine not in ENGINES:
        problems.add(f"spec.autoscaling.engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    replicas = mapping(raw.get("replicas"), "spec.replicas")
    min_r = _int(replicas.get("min"), "spec.replicas.min", 1)
    max_r = _int(replicas.get("max"), "spec.replicas.max", 10)
    # The HPA cannot scale to zero; KEDA can (it activates the pool on demand).
    floor = 0 if engine == "keda" else 1
    if min_r < floor or min_r > max_r:
        hint = "" if floor == 0 else " (0 only with autoscaling.engine keda)"
        problems.add(f"replicas.min must be >= {floor} and <= replicas.max{hint}")
    if max_r < 1:
        problems.add("replicas.max must be >= 1")
    spa = _int(raw.get("sessionsPerAgent"), "spec.sessionsPerAgent", 2)
    if spa <= 0:
        problems.add("sessionsPerAgent must be greater than 0")
    buffer = raw.get("bufferSessions", 0)
    if isinstance(buffer, str):
        if not BUFFER_PERCENT.match(buffer):
            problems.add("bufferSessions must be a non-negative integer or a percentage such as '25%'")
    elif isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 0:
        problems.add("bufferSessions must be a non-negative integer or a percentage such as '25%'")

    resources = mapping(raw.get("resources"), "spec.resources")
    requests = mapping(resources.get("requests") or {"cpu": "1", "memory": "2Gi"}, "spec.resources.requests")
    cpu = _quantity(requests.get("cpu"), "spec.resources.requests.cpu")
    memory = _quantity(requests.get("memory"), "spec.resources.requests.memory")
    limits = resources.get("limits")
    if limits is not None:
        lim = mapping(limits, "spec.resources.limits")
        # Compared as written, like the CRD's CEL rule (self.limits == self.requests): 2 != "2".
        if dict(lim) != dict(requests):
            problems.add("resources.limits must equal resources.requests (Guaranteed QoS)")

    providers_raw = mapping(raw.get("providers"), "spec.providers")
    providers = []
    for role in ("stt", "llm", "tts"):
        p = mapping(providers_raw.get(role), f"spec.providers.{role}")
        name = str(p.get("provider") or "local")
        secret = _secret(p.get("secretRef"), f"spec.providers.{role}.secretRef", "api-key")
        if name != "local" and secret is None:
            problems.add(f"providers.{role}.secretRef is required for provider {name}")
        providers.append(
            Provider(
                role=role,
                provider=name,
                model=p.get("model") or None,
                base_url=p.get("baseURL") or None,
                secret=secret if name != "local" else None,
            )
        )

    redis = mapping(raw.get("redis"), "spec.redis")
    redis_url = redis.get("url") or None
    redis_secret = _secret(redis.get("secretRef"), "spec.redis.secretRef", "url")
    if (redis_url is None) == (redis_secret is None):
        problems.add("redis needs exactly one of url or secretRef")
    redis_tls = bool(redis.get("tls", False))
    if redis_tls and redis_url is not None and not redis_url.startswith(("rediss://", "rediss+sentinel://")):
        problems.add("redis.tls requires a rediss:// url (or rediss+sentinel://)")

    session = mapping(raw.get("session"), "spec.session")
    service = mapping(raw.get("service"), "spec.service")
    ice = mapping(raw.get("ice"), "spec.ice")
    servers = tuple(
        tuple(str(u) for u in mapping(s, "spec.ice.servers[]").get("urls", []))
        for s in (ice.get("servers") or [])
    )
    turn_raw = ice.get("turn")
    turn = None
    if turn_raw is not None:
        t = mapping(turn_raw, "spec.ice.turn")
        ref = mapping(t.get("secretRef"), "spec.ice.turn.secretRef")
        if not ref.get("name"):
            problems.add("spec.ice.turn.secretRef.name is required")
        turn = TurnServer(
            urls=tuple(str(u) for u in t.get("urls", [])),
            secret_name=str(ref.get("name")),
            username_key=str(ref.get("usernameKey") or "username"),
            credential_key=str(ref.get("credentialKey") or "credential"),
        )
    host_network = raw.get("hostNetwork", False)
    if not isinstance(host_network, bool):
        problems.add("spec.hostNetwork must be a boolean")
    return PoolSpec(
        image=str(image or ""),
        image_pull_policy=str(raw.get("imagePullPolicy") or "IfNotPresent"),
        min_replicas=min_r,
        max_replicas=max_r,
        sessions_per_agent=spa,
        buffer_sessions=buffer,
        cpu=cpu,
        memory=memory,
        providers=tuple(providers),
        redis_url=redis_url,
        redis_secret=redis_secret,
        redis_tls=redis_tls,
        session_ttl_s=_int(session.get("ttlSeconds"), "spec.session.ttlSeconds", 3600),
        drain_timeout_s=_int(session.get("drainTimeoutSeconds"), "spec.session.drainTimeoutSeconds", 300),
        service_type=str(service.get("type") or "ClusterIP"),
        service_port=_int(service.get("port"), "spec.service.port", 80),
        session_affinity=str(service.get("sessionAffinity") or "ClientIP"),
        affinity_timeout_s=_int(service.get("timeoutSeconds"), "spec.service.timeoutSeconds", 10800),
        service_annotations={str(k): str(v) for k, v in mapping(service.get("annotations"), "a").items()},
        ice_servers=servers,
        turn=turn,
        host_candidates=problems.read(lambda: _host_candidates(ice, host_network), HostCandidates()),
        host_network=host_network,
        tuning_profile=raw.get("tuningProfile") or None,
        tolerations=tuple(mapping(t, "spec.tolerations[]") for t in (raw.get("tolerations") or [])),
        turn_taking=problems.read(lambda: _turn_taking(raw.get("turn")), TurnTaking()),
        engine=engine,
        expose_transcripts=problems.read(
            lambda: _flag(session.get("exposeTranscripts"), "spec.session.exposeTranscripts"), False
        ),
    )
