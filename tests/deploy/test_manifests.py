"""The deployment files under deploy/, checked with real validators: the Kubernetes manifests against the
Kubernetes 1.37 schemas (kubernetes-validate, strict: unknown fields fail), compose.yaml against the Compose
specification's schema (check-jsonschema's vendored copy), the Prometheus config with promtool, and the hearth
config they carry with hearth's own loader. Each validator is also shown a broken copy, so a validator that
checks nothing cannot pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from hearth.config import DEFAULT_PORT, load_config

DEPLOY = Path(__file__).parents[2] / "deploy"
BIN = Path(sys.executable).parent


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_kubernetes_manifests_are_valid(tmp_path: Path) -> None:
    manifest = DEPLOY / "kubernetes" / "hearth.yaml"
    r = _run(BIN / "kubernetes-validate", "--strict", "--quiet", manifest)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(manifest.read_text().replace("readinessProbe:", "readinesProbe:", 1))
    assert _run(BIN / "kubernetes-validate", "--strict", "--quiet", broken).returncode != 0


def test_kubernetes_deployment_matches_hearth() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all((DEPLOY / "kubernetes/hearth.yaml").read_text())}
    assert docs[("ConfigMap", "hearth-config")]["data"]["hearth.yaml"] == (DEPLOY / "hearth.yaml").read_text()
    pod = docs[("Deployment", "hearth")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"][0]["containerPort"] == DEFAULT_PORT
    assert all("value" not in e for e in c["env"]), "secrets come from a Secret, never from the manifest"
    hpa = docs[("HorizontalPodAutoscaler", "hearth")]["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "hearth_requests_per_second"


def test_the_deployed_config_loads(tmp_path: Path) -> None:
    cfg = load_config(DEPLOY / "hearth.yaml", env={})
    assert cfg.cache.redis_url and cfg.keys.store == "redis" and cfg.conversation.memory == "redis"
    assert cfg.rag.store == "chroma"


def test_compose_file_is_valid_and_its_files_exist(tmp_path: Path) -> None:
    compose = DEPLOY / "compose.yaml"
    r = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", compose)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(compose.read_text().replace("    expose:", "    exposes:", 1))  # not a service field
    assert _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken).returncode != 0
    spec = yaml.safe_load(compose.read_text())
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.endswith("hearth-admin-key"):  # that one the operator writes
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is not in deploy/"
    assert "HEARTH_ADMIN_KEY" in spec["services"]["hearth"]["environment"]


def test_prometheus_config_for_compose(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/test.sh installs Debian's prometheus)"
    text = (DEPLOY / "prometheus" / "prometheus-compose.yml").read_text()
    key = tmp_path / "hearth-admin-key"
    key.write_text("hk-test")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text.replace("/etc/prometheus/hearth-admin-key", str(key)))
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    r = _run(promtool, "check", "config", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
