"""Operator settings: environment only, a bad value stops the process with one line naming it."""

import pathlib
import socket
import subprocess
import sys

import pytest

from tests.operator.cluster import ROOT
from tests.operator.harness import free_port, operator_env, write_kubeconfig
from voice_operator.config import ConfigError, OperatorConfig


def test_defaults_match_the_documented_ports_and_names() -> None:
    config = OperatorConfig.from_env({})
    assert (config.health_port, config.metrics_port, config.external_metrics_port) == (8080, 9090, 6443)
    assert config.namespaces == () and config.tuning_namespace == "voicepool-tuning"
    assert (config.status_interval_s, config.peering, config.log_format) == (
        10.0,
        "voicepool-operator",
        "json",
    )


def test_values_are_parsed(tmp_path: pathlib.Path) -> None:
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("x")
    config = OperatorConfig.from_env(
        {
            "VOICE_OPERATOR_NAMESPACES": "voice, calls ,",
            "VOICE_OPERATOR_STATUS_INTERVAL": "0.5",
            "VOICE_OPERATOR_STANDALONE": "yes",
            "VOICE_OPERATOR_TLS_CERT": str(tmp_path / "tls.crt"),
            "VOICE_OPERATOR_TLS_KEY": str(tmp_path / "tls.key"),
            "VOICE_OPERATOR_LOG_LEVEL": "debug",
        }
    )
    assert config.namespaces == ("voice", "calls")
    assert config.status_interval_s == 0.5 and config.standalone and config.log_level == "DEBUG"
    assert config.tls_cert == str(tmp_path / "tls.crt")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"VOICE_OPERATOR_METRICS_PORT": "http"}, "VOICE_OPERATOR_METRICS_PORT"),
        ({"VOICE_OPERATOR_EXTERNAL_METRICS_PORT": "70000"}, "VOICE_OPERATOR_EXTERNAL_METRICS_PORT"),
        ({"VOICE_OPERATOR_STATUS_INTERVAL": "0"}, "VOICE_OPERATOR_STATUS_INTERVAL"),
        ({"VOICE_OPERATOR_STANDALONE": "maybe"}, "VOICE_OPERATOR_STANDALONE"),
        ({"VOICE_OPERATOR_TLS_CERT": "/tls/crt"}, "VOICE_OPERATOR_TLS_KEY"),
        ({"VOICE_OPERATOR_LOG_FORMAT": "xml"}, "VOICE_OPERATOR_LOG_FORMAT"),
        ({"VOICE_OPERATOR_CLIENT_CA": "/ca.crt"}, "VOICE_OPERATOR_CLIENT_CA"),
        ({"VOICE_OPERATOR_TLS_CERT": "/no/crt", "VOICE_OPERATOR_TLS_KEY": "/no/key"}, "no such file"),
        ({"VOICE_OPERATOR_LOG_LEVEL": "loud"}, "VOICE_OPERATOR_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OperatorConfig.from_env(env)


def test_the_process_stops_at_once_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voice_operator"],
        env={
            "PATH": "/usr/bin:/bin",
            "VOICE_OPERATOR_HEALTH_PORT": "-1",
            "PYTHONPATH": str(ROOT / "operator"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "voice-operator: configuration error: VOICE_OPERATOR_HEALTH_PORT must be >= 0, got -1"
    ]


def test_a_port_in_use_is_fatal_not_retried(tmp_path: pathlib.Path) -> None:
    """kopf retries failed startup activities every minute by default; the operator exits instead."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {"metrics": taken.getsockname()[1]} | {
            name: free_port() for name in ("external", "health", "scaler", "waker")
        }
        env = operator_env(write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9"), ports)
        result = subprocess.run(
            [sys.executable, "-m", "voice_operator"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert result.returncode != 0
    assert "address already in use" in result.stdout + result.stderr
