"""The redis-backup component (with its s3 option and its restore Job): valid objects, the same
hardening and policies as the rest, the script the pods run is the repository's file, it reaches
Redis with the auth and TLS the manifests set up, and alerts whose runbooks are docs sections.
What the script does is tested against a real redis-server in tests/redis/test_backup.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.deploy import test_policy
from tests.deploy.manifests import (
    MANIFESTS,
    ROOT,
    Obj,
    kustomize,
    named,
    operator_rendered,
    render,
    render_with_components,
)
from tests.deploy.schemas import problems
from tests.deploy.test_network import REDIS, peers
from tests.deploy.test_scans import failed_checks, tool

COMPONENT = "components/redis-backup"
SCRIPT = MANIFESTS / COMPONENT / "redis-backup.sh"
BACKUP = {"app.kubernetes.io/name": "redis-backup"}
RUNBOOK = re.compile(r"^https://github\.com/voicepool/voicepool/blob/main/(docs/[a-z-]+\.md)#([a-z0-9-]+)$")

# The policy checks every deployment passes (tests/deploy/test_policy.py), over this component too.
POLICY: list[Callable[[list[Obj]], None]] = [
    test_policy.test_only_the_tuner_is_privileged_or_on_the_host,
    test_policy.test_containers_run_non_root_hardened,
    test_policy.test_resources_set_everywhere,
    test_policy.test_images_are_pinned_by_tag,
    test_policy.test_secrets_only_by_reference,
    test_policy.test_only_the_operator_mounts_an_api_token,
]


@pytest.fixture(scope="module", params=["overlays/dev", "overlays/prod"])
def backup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    """An overlay with Redis TLS, backups and their S3 copy, plus the restore Job: all of it at once."""
    components = ["components/redis-tls", COMPONENT, f"{COMPONENT}/s3"]
    objs = render_with_components(str(request.param), components, tmp_path_factory.mktemp("backup"))
    return objs + kustomize(MANIFESTS / COMPONENT / "restore")


def template(objs: list[Obj], kind: str, name: str) -> Obj:
    obj = named(objs, kind, name)
    found: Obj = (
        obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["spec"]["template"]
    )
    return found


def pod(objs: list[Obj], kind: str, name: str) -> Obj:
    return dict(template(objs, kind, name)["spec"])


def test_objects_are_valid(backup: list[Obj]) -> None:
    mine = [
        o for o in backup if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "redis-backup"
    ]
    assert {o["kind"] for o in mine} == {
        "PersistentVolumeClaim",
        "CronJob",
        "NetworkPolicy",
        "PrometheusRule",
        "Job",
    }
    ours = [
        *mine,
        named(backup, "ConfigMap", "redis-backup-scripts"),
        named(backup, "NetworkPolicy", "redis-from-backup"),
    ]
    assert {o["metadata"]["name"]: problems(o) for o in ours} == {o["metadata"]["name"]: [] for o in ours}
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "voicepool" for o in ours)


@pytest.mark.parametrize("check", POLICY, ids=lambda c: c.__name__)
def test_component_meets_every_deployment_policy(
    backup: list[Obj], check: Callable[[list[Obj]], None]
) -> None:
    examples = render("examples")
    check(backup + examples + operator_rendered(examples))


def test_the_pods_run_the_repository_script_from_its_configmap(backup: list[Obj]) -> None:
    scripts = named(backup, "ConfigMap", "redis-backup-scripts")
    assert scripts["data"] == {"redis-backup.sh": SCRIPT.read_text()}
    steps = {}
    for kind, name in (("CronJob", "redis-backup"), ("Job", "redis-restore")):
        spec = pod(backup, kind, name)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["scripts"]["configMap"]["name"] == "redis-backup-scripts"
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["command"][:2] == ["sh", "/scripts/redis-backup.sh"], c["name"]
            assert {"name": "scripts", "mountPath": "/scripts", "readOnly": True} in c["volumeMounts"]
            steps[c["name"]] = c["command"][2]
    # Snapshot, then the S3 copy, then local pruning: pruning never runs before the copy is made.
    cron = pod(backup, "CronJob", "redis-backup")
    assert [c["name"] for c in cron["initContainers"]] == ["snapshot", "upload"]
    assert steps == {"snapshot": "snapshot", "upload": "upload", "prune": "prune", "restore": "restore"}
    assert (subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True, timeout=10).returncode) == 0


def test_backups_reach_redis_with_its_password_and_tls(backup: list[Obj]) -> None:
    spec = pod(backup, "CronJob", "redis-backup")
    [snapshot] = [c for c in spec["initContainers"] if c["name"] == "snapshot"]
    env = {e["name"]: e.get("value") for e in snapshot["env"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in snapshot["volumeMounts"]}
    # The password file and the CA sit where the script looks by default.
    defaults = dict(re.findall(r'^: "\$\{(\w+):=([^}]*)\}"', SCRIPT.read_text(), re.M))
    redis = pod(backup, "StatefulSet", "redis")
    redis_auth = next(v for v in redis["volumes"] if v["name"] == "auth")["secret"]
    assert volumes["auth"]["secret"]["secretName"] == redis_auth["secretName"]
    assert f"{mounts['auth']}/password" == defaults["REDIS_PASSWORD_FILE"]
    certificate = named(backup, "Certificate", "redis-tls")["spec"]
    assert volumes["tls"]["secret"] | {"optional": True} == volumes["tls"]["secret"]
    assert volumes["tls"]["secret"]["secretName"] == certificate["secretName"]
    assert f"{mounts['tls']}/ca.crt" == defaults["REDIS_CA_FILE"]
    # TLS verification: the host the script dials is a name on the server's certificate.
    assert env["REDIS_HOST"] in certificate["dnsNames"]
    assert env["REDIS_HOST"].split(".")[0] == named(backup, "Service", "redis")["metadata"]["name"]
    # The restore Job writes Redis' own volume as Redis' own user.
    restore = pod(backup, "Job", "redis-restore")
    claim = next(v for v in restore["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    template = named(backup, "StatefulSet", "redis")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert claim == f"{template}-redis-0"
    for spec_ in (spec, restore):
        assert spec_["securityContext"]["runAsUser"] == redis["securityContext"]["runAsUser"]


def test_network_opens_only_backup_to_redis_and_https(backup: list[Obj]) -> None:
    spec = named(backup, "NetworkPolicy", "redis-backup")["spec"]
    assert spec["podSelector"]["matchLabels"] == BACKUP
    # Both pods are under this policy (and default deny); only the backup pods may reach Redis.
    for kind, name in (("CronJob", "redis-backup"), ("Job", "redis-restore")):
        assert BACKUP.items() <= template(backup, kind, name)["metadata"]["labels"].items()
    assert spec["ingress"] == []
    assert [p["podSelector"]["matchLabels"] for p in peers(spec["egress"], "to") if "podSelector" in p] == [
        REDIS
    ]
    https = [r for r in spec["egress"] if any("ipBlock" in p for p in r["to"])]
    assert [r["ports"] for r in https] == [[{"protocol": "TCP", "port": 443}]]
    assert "169.254.0.0/16" in https[0]["to"][0]["ipBlock"]["except"]
    into_redis = named(backup, "NetworkPolicy", "redis-from-backup")["spec"]
    assert into_redis["podSelector"]["matchLabels"] == REDIS
    # Only the backup pods, not the restore Job, which needs no network.
    [source] = peers(into_redis["ingress"], "from")
    assert source["podSelector"]["matchLabels"] == BACKUP | {"app.kubernetes.io/component": "backup"}
    assert into_redis["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_alerts_on_failed_or_stale_backups_with_runbooks_in_the_docs(backup: list[Obj]) -> None:
    rule = named(backup, "PrometheusRule", "voicepool-redis-backup")
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(rules) == {"VoiceRedisBackupFailed", "VoiceRedisBackupStale"}
    cron = named(backup, "CronJob", "redis-backup")
    for name, r in rules.items():
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert re.fullmatch(r"\d+m", r["for"])
        # kube-state-metrics' series of this CronJob, by its name.
        assert f'cronjob="{cron["metadata"]["name"]}"' in r["expr"]
        match = RUNBOOK.match(r["annotations"]["runbook_url"])
        assert match, r["annotations"]["runbook_url"]
        doc, anchor = match.groups()
        assert anchor == name.lower()
        assert anchor in github_anchors((ROOT / doc).read_text()), f"{doc} has no section #{anchor}"
    assert 'owner_name="redis-backup"' in rules["VoiceRedisBackupFailed"]["expr"]
    # Stale means more than one missed hourly run.
    assert cron["spec"]["schedule"].split()[1:] == ["*", "*", "*", "*"]
    assert "3 * 3600" in rules["VoiceRedisBackupStale"]["expr"]


@pytest.mark.timeout(600)
def test_checkov_finds_nothing_in_the_component(tmp_path: Path) -> None:
    components = ["components/redis-tls", COMPONENT, f"{COMPONENT}/s3"]
    (tmp_path / "render").mkdir()
    objs = render_with_components("overlays/prod", components, tmp_path / "render")
    mine = [
        o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "redis-backup"
    ]
    mine += kustomize(MANIFESTS / COMPONENT / "restore")
    path = tmp_path / "redis-backup.yaml"
    path.write_text(yaml.safe_dump_all(mine, sort_keys=False))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    args = [tool("checkov"), "--config-file", str(MANIFESTS / "checkov.yaml"), "-o", "json", "-f", str(path)]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=540, env=env, cwd=tmp_path, check=False
    )
    assert out.returncode in (0, 1), out.stderr[-2000:]
    parsed = json.loads(out.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    assert sum(r["summary"]["resource_count"] for r in reports) >= 3
    assert [f for r in reports for f in failed_checks(r)] == []


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_the_component_leaves_redis_and_its_policy_alone(overlay: str, tmp_path: Path) -> None:
    """Backups add their own policies and pods; Redis and the base 'redis' policy stay as they are."""
    with_backups = render_with_components(overlay, [COMPONENT], tmp_path)
    plain = render(overlay)
    for kind, name in (("NetworkPolicy", "redis"), ("StatefulSet", "redis"), ("Service", "redis")):
        assert named(with_backups, kind, name) == named(plain, kind, name)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: apt-get install prometheus (scripts/ensure-system-deps.sh test)")
    return found


CRON = 'namespace="voicepool", cronjob="redis-backup"'
NS = {"namespace": "voicepool"}


def samples(value: int, from_s: int = 0) -> str:
    """One sample a minute for 6 hours, absent before `from_s` (what kube-state-metrics reports)."""
    start = from_s // 60
    return f"_x{start} {value}x{360 - start}" if start else f"{value}x360"


def job(name: str, started_s: int, failed: bool) -> list[dict[str, str]]:
    """kube-state-metrics' series of one Job of the CronJob, from its start."""
    labels = f'namespace="voicepool", job_name="{name}"'
    return [
        {"series": f"kube_job_status_start_time{{{labels}}}", "values": samples(started_s, started_s)},
        {
            "series": f'kube_job_failed{{{labels}, condition="true"}}',
            "values": samples(int(failed), started_s),
        },
        {
            "series": f'kube_job_owner{{{labels}, owner_kind="CronJob", owner_name="redis-backup"}}',
            "values": samples(1, started_s),
        },
    ]


def cronjob(last_success_s: int | None) -> list[dict[str, str]]:
    """The CronJob made at time 0; its last success at `last_success_s` (None: never)."""
    out = [{"series": f"kube_cronjob_created{{{CRON}}}", "values": samples(0)}]
    if last_success_s is not None:
        series = f"kube_cronjob_status_last_successful_time{{{CRON}}}"
        out.append({"series": series, "values": samples(last_success_s, last_success_s)})
    return out


def test_alerts_fire_on_a_failed_or_stale_backup_and_only_then(backup: list[Obj], tmp_path: Path) -> None:
    """The rules evaluated by Prometheus' own promtool over kube-state-metrics series."""
    rule = named(backup, "PrometheusRule", "voicepool-redis-backup")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    annotations = {r["alert"]: r["annotations"] for g in rule["spec"]["groups"] for r in g["rules"]}

    def fired(alert: str, summary: str) -> list[dict[str, object]]:
        return [
            {
                "exp_labels": {**NS, "severity": "warning" if alert.endswith("Failed") else "critical"},
                "exp_annotations": {**annotations[alert], "summary": summary},
            }
        ]

    failed = fired("VoiceRedisBackupFailed", "The last Redis backup in voicepool failed")

    def case(series: list[dict[str, str]], at: str, alert: str, expected: list[dict[str, object]]) -> Obj:
        return {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
        }

    tests = [
        # Hourly successes: nothing, either alert.
        case(
            cronjob(3 * 3600) + job("redis-backup-1", 3 * 3600, False), "3h50m", "VoiceRedisBackupStale", []
        ),
        case(
            cronjob(3 * 3600) + job("redis-backup-1", 3 * 3600, False), "3h50m", "VoiceRedisBackupFailed", []
        ),
        # The newest Job failed after the last success: fires once `for` has passed, not before.
        case(cronjob(3600) + job("redis-backup-2", 7200, True), "2h10m", "VoiceRedisBackupFailed", failed),
        case(cronjob(3600) + job("redis-backup-2", 7200, True), "2h3m", "VoiceRedisBackupFailed", []),
        # A failure followed by a success: resolved.
        case(cronjob(9000) + job("redis-backup-2", 7200, True), "2h40m", "VoiceRedisBackupFailed", []),
        # Never a success, and the first Job failed.
        case(cronjob(None) + job("redis-backup-0", 600, True), "30m", "VoiceRedisBackupFailed", failed),
        # Last success 4 hours ago: stale; 2 h 55 min ago: not yet.
        case(
            cronjob(3600),
            "5h",
            "VoiceRedisBackupStale",
            fired("VoiceRedisBackupStale", "No Redis backup in voicepool succeeded for 4h 0m 0s"),
        ),
        case(cronjob(3600), "3h55m", "VoiceRedisBackupStale", []),
        # None ever, 3 hours after the CronJob was made.
        case(cronjob(None), "2h", "VoiceRedisBackupStale", []),
        case(
            cronjob(None),
            "3h15m",
            "VoiceRedisBackupStale",
            fired("VoiceRedisBackupStale", "No Redis backup in voicepool succeeded for 3h 15m 0s"),
        ),
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    checked = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
