"""Operator settings from the environment, validated once at start."""

import dataclasses
import os
from collections.abc import Mapping

from voice_operator import constants as c


class ConfigError(ValueError):
    """Bad configuration: the message names the setting."""


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    bind_host: str = "0.0.0.0"
    metrics_port: int = 9090
    external_metrics_port: int = 6443
    health_port: int = 8080
    # KEDA's external scaler (gRPC) and the waker of pools at zero (HTTP): docs/operator.md.
    scaler_port: int = c.SCALER_PORT
    scaler_address: str = c.SCALER_ADDRESS
    waker_port: int = 8081
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    tuning_namespace: str = "voicepool-tuning"
    tuner_image: str = "busybox:1.36"
    status_interval_s: float = 10.0
    redis_timeout_s: float = 2.0
    peering: str = "voicepool-operator"
    standalone: bool = False
    priority: int = 0
    log_format: str = "json"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "OperatorConfig":
        env = os.environ if env is None else env
        namespaces = tuple(
            ns.strip() for ns in env.get("VOICE_OPERATOR_NAMESPACES", "").split(",") if ns.strip()
        )
        cert = env.get("VOICE_OPERATOR_TLS_CERT") or None
        key = env.get("VOICE_OPERATOR_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ConfigError("VOICE_OPERATOR_TLS_CERT and VOICE_OPERATOR_TLS_KEY must be set together")
        client_ca = env.get("VOICE_OPERATOR_CLIENT_CA") or None
        for name, path in (
            ("VOICE_OPERATOR_TLS_CERT", cert),
            ("VOICE_OPERATOR_TLS_KEY", key),
            ("VOICE_OPERATOR_CLIENT_CA", client_ca),
        ):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"{name}: no such file {path!r}")
        if client_ca and not cert:
            raise ConfigError(
                "VOICE_OPERATOR_CLIENT_CA needs VOICE_OPERATOR_TLS_CERT and VOICE_OPERATOR_TLS_KEY"
            )
        log_format = env.get("VOICE_OPERATOR_LOG_FORMAT", "json").lower()
        if log_format not in {"json", "plain"}:
            raise ConfigError(f"VOICE_OPERATOR_LOG_FORMAT must be json or plain, got {log_format!r}")
        log_level = env.get("VOICE_OPERATOR_LOG_LEVEL", "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"VOICE_OPERATOR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}"
            )
        return cls(
            namespaces=namespaces,
            bind_host=env.get("VOICE_OPERATOR_BIND", "0.0.0.0"),
            metrics_port=_int(env, "VOICE_OPERATOR_METRICS_PORT", 9090, maximum=65535),
            external_metrics_port=_int(env, "VOICE_OPERATOR_EXTERNAL_METRICS_PORT", 6443, maximum=65535),
            health_port=_int(env, "VOICE_OPERATOR_HEALTH_PORT", 8080, maximum=65535),
            scaler_port=_int(env, "VOICE_OPERATOR_SCALER_PORT", c.SCALER_PORT, maximum=65535),
            scaler_address=env.get("VOICE_OPERATOR_SCALER_ADDRESS") or c.SCALER_ADDRESS,
            waker_port=_int(env, "VOICE_OPERATOR_WAKER_PORT", 8081, maximum=65535),
            tls_cert=cert,
            tls_key=key,
            client_ca=client_ca,
            tuning_namespace=env.get("VOICE_OPERATOR_TUNING_NAMESPACE", "voicepool-tuning"),
            tuner_image=env.get("VOICE_OPERATOR_TUNER_IMAGE", "busybox:1.36"),
            status_interval_s=_float(env, "VOICE_OPERATOR_STATUS_INTERVAL", 10.0),
            redis_timeout_s=_float(env, "VOICE_OPERATOR_REDIS_TIMEOUT", 2.0),
            peering=env.get("VOICE_OPERATOR_PEERING", "voicepool-operator"),
            standalone=_bool(env, "VOICE_OPERATOR_STANDALONE", False),
            priority=_int(env, "VOICE_OPERATOR_PRIORITY", 0),
            log_format=log_format,
            log_level=log_level,
        )
