"""deploy/: the alert rules pass promtool's checks and unit tests, and a real Prometheus scraping a real hearth
(with the admin key, as deploy/prometheus/prometheus.yml does) answers every Grafana panel's query with data."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, free_port, smol_model, start_hearth

DEPLOY = Path(__file__).parents[2] / "deploy"
ADMIN = "adm-prometheus-secret-0123456789abc"


def _tool(name: str) -> str:
    exe = shutil.which(name)
    assert exe, f"{name} is not installed (scripts/test.sh installs Debian's prometheus package)"
    return exe


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus", capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=DEPLOY / "prometheus",
                          capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def _panels() -> list[tuple[str, str]]:
    board = json.loads((DEPLOY / "grafana" / "hearth.json").read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def test_the_dashboard_is_grafana_json_with_one_query_per_panel() -> None:
    board = json.loads((DEPLOY / "grafana" / "hearth.json").read_text())
    assert board["uid"] and board["templating"]["list"][0]["type"] == "datasource"
    assert len(_panels()) == len(board["panels"]) >= 12
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def _post(url: str, body: Any, key: str | None) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def scraped(tmp_session: Path, bad: Server) -> Iterator[str]:
    config = f"""
conversation: {{quality: {{sample: 1.0}}}}
models:
{smol_model()}
  paid:
    kind: openai
    base_url: {bad.url}/ok/v1
    model: gpt
  failing:
    kind: openai
    base_url: {bad.url}/500/v1
    model: gpt
  auto:
    kind: router
    default: failing
    fallbacks: {{failing: [smol]}}
    retries: 0
  voice:
    kind: router
    default: smol
    pace: speech
    segments: true
    health_interval: null
prices:
  paid: {{input: 1, output: 2}}
keys:
  path: {tmp_session / "prometheus-keys.db"}
"""
    hearth = start_hearth(config, tmp_session, "prometheus-hearth", env={"HEARTH_ADMIN_KEY": ADMIN})
    keys: dict[str, str] = {}
    for name, fields in {"spender": {"budget": 1.0}, "limited": {"rpm": 1}}.items():
        req = urllib.request.Request(hearth.url + "/admin/keys", method="POST",
                                     data=json.dumps({"name": name, **fields}).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(req) as r:
            keys[name] = json.loads(r.read())["key"]

    def traffic() -> None:
        chat = hearth.url + "/v1/chat/completions"
        msg = [{"role": "user", "content": "Say one short sentence, then another."}]
        for model in ("smol", "smol", "auto", "voice", "paid"):  # twice smol at temperature 0: a cache hit
            assert _post(chat, {"model": model, "messages": msg, "max_tokens": 12, "temperature": 0,
                                "stream": model == "voice"}, keys["spender"]) == 200
        _post(chat, {"model": "smol", "messages": msg, "max_tokens": 4}, keys["limited"])
        assert _post(chat, {"model": "smol", "messages": msg, "max_tokens": 4}, keys["limited"]) == 429
        assert _post(chat, {"model": "smol", "messages": msg}, "hk-unknown") == 401

    traffic()
    creds = tmp_session / "prometheus-admin-key"
    creds.write_text(ADMIN)
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_session / "alerts.yml")
    (tmp_session / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: hearth
    authorization: {{type: Bearer, credentials_file: {creds}}}
    static_configs: [{{targets: ["127.0.0.1:{hearth.port}"]}}]
""")
    port = free_port()
    log = tmp_session / "prometheus.log"
    proc = subprocess.Popen([_tool("prometheus"), f"--config.file={tmp_session / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_session / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _query(url, 'count(up{job="hearth"} == 1)'):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped hearth:\n" + log.read_text()[-2000:])
        time.sleep(2.5)
        traffic()  # counters move between scrapes, so rates have something to show
        time.sleep(3)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        hearth.stop()


def _query(url: str, expr: str) -> list[Any]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.model
@pytest.mark.parametrize(("title", "expr"), _panels(), ids=[t for t, _ in _panels()])
def test_every_dashboard_panel_returns_data_from_a_live_hearth(scraped: str, title: str, expr: str) -> None:
    assert _query(scraped, expr), f"panel {title!r} shows no data: {expr}"


@pytest.mark.model
def test_prometheus_loaded_the_alert_rules(scraped: str) -> None:
    with urllib.request.urlopen(f"{scraped}/api/v1/rules", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    names = {rule["name"] for g in groups for rule in g["rules"]}
    assert {"HearthSlowFirstToken", "HearthHighErrorRate", "HearthCircuitOpen", "HearthLocalQueueSaturated",
            "HearthBudgetNearlySpent"} <= names
