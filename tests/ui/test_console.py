"""The console at /ui in real headless Chromium against a real hearth (SmolLM2 in-process, a remote provider,
a knowledge base): chat with its route badges, compare two models, upload and search, the live dashboard, a
401 that says what to do, and the keys page."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, smol_model, start_hearth
from tests.ui.conftest import readme_shot

pytestmark = pytest.mark.model
ADMIN = "adm-console-secret-0123456789abcdef"


def _config(tmp: Path, bad: Server, name: str) -> str:
    return f"""
models:
{smol_model()}
  paid:
    kind: openai
    base_url: {bad.url}/ok/v1
    model: gpt
  auto:
    kind: router
    default: smol
    health_interval: null
rag:
  path: {tmp / f"{name}-rag"}
  chat_model: smol
keys:
  path: {tmp / f"{name}-keys.db"}
"""


@pytest.fixture(scope="module")
def hearth(tmp_session: Path, bad: Server) -> Iterator[Server]:
    s = start_hearth(_config(tmp_session, bad, "ui"), tmp_session, "ui")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keyed(tmp_session: Path, bad: Server) -> Iterator[Server]:
    s = start_hearth(_config(tmp_session, bad, "ui-keyed"), tmp_session, "ui-keyed", env={"HEARTH_ADMIN_KEY": ADMIN})
    yield s
    s.stop()


def until(page: Any, check: Any, timeout: float = 15.0) -> None:
    """Poll from Python: the console's CSP forbids the string evaluation `wait_for_function` would use."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the page never got there"
        page.wait_for_timeout(200)


def test_the_console_is_small_and_self_contained() -> None:
    static = resources.files("hearth.ui").joinpath("static")
    files = [p for p in Path(str(static)).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300 * 1024
    html = (Path(str(static)) / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # no CDN: hearth works offline


def test_a_chat_streams_its_answer_with_the_route_it_took(page: Any, hearth: Server) -> None:
    page.goto(hearth.url + "/ui/")
    page.wait_for_selector("#model-a option[value=auto]", state="attached")
    page.select_option("#model-a", "auto")
    page.fill("#max-tokens", "24")
    page.fill("#prompt", "Name three colours.")
    page.press("#prompt", "Enter")
    answer = page.locator("#pane-a .assistant").last
    answer.locator(".badge", has_text="TTFT").wait_for()
    assert answer.locator(".text").inner_text().strip()
    badges = answer.locator(".badge").all_inner_texts()
    assert "smol" in badges and any(b.startswith("route: default") for b in badges)
    assert any(re.fullmatch(r"\d+ \+ \d+ tokens", b) for b in badges) and any("tok/s" in b for b in badges)
    assert "local" in (answer.locator(".badge", has_text="smol").get_attribute("class") or "")
    readme_shot(page, "playground")


def test_compare_sends_one_prompt_to_two_models(page: Any, hearth: Server) -> None:
    page.goto(hearth.url + "/ui/#playground")
    page.wait_for_selector("#model-a option[value=paid]", state="attached")
    page.check("#compare")
    page.select_option("#model-a", "smol")
    page.select_option("#model-b", "paid")
    page.fill("#max-tokens", "16")
    page.fill("#prompt", "Say hello.")
    page.click("#send")
    for side in ("a", "b"):
        page.locator(f"#pane-{side} .assistant .badge", has_text="TTFT").wait_for()
    assert page.locator("#pane-b .assistant .text").inner_text() == "Hello from upstream"
    assert "remote" in (page.locator("#pane-b .badge", has_text="paid").get_attribute("class") or "")
    readme_shot(page, "compare")


@pytest.mark.parametrize(("dialect", "first"), [("messages", "event: message_start"),
                                               ("responses", "event: response.created")])
def test_the_playground_speaks_each_api_and_shows_its_raw_events(page: Any, hearth: Server, dialect: str,
                                                                  first: str) -> None:
    page.goto(hearth.url + "/ui/#playground")
    page.wait_for_selector("#model-a option[value=smol]", state="attached")
    page.select_option("#model-a", "smol")
    page.select_option("#dialect", dialect)
    page.check("#raw-events")
    page.fill("#max-tokens", "12")
    page.fill("#prompt", "Say hello.")
    page.click("#send")
    answer = page.locator("#pane-a .assistant").last
    answer.locator(".badge", has_text="TTFT").wait_for()
    assert answer.locator(".text").inner_text().strip()
    assert any(re.fullmatch(r"\d+ \+ [1-9]\d* tokens", b) for b in answer.locator(".badge").all_inner_texts())
    answer.locator("details.raw summary").click()
    events = answer.locator("details.raw pre").inner_text()
    assert events.startswith(first) and any(e in events for e in ("message_stop", "response.completed",
                                                                  "response.incomplete"))


def test_an_uploaded_file_is_found_by_search(page: Any, hearth: Server, tmp_path: Path) -> None:
    doc = tmp_path / "flux-manual.md"
    doc.write_text("# Flux capacitor\n\nThe flux capacitor needs 1.21 gigawatts to travel through time.\n\n"
                   "# Hoverboard\n\nHoverboards do not work on water.\n")
    page.goto(hearth.url + "/ui/#kbs")
    page.fill("#kb-name", "manual")
    page.set_input_files("#file-input", str(doc))
    page.locator("#upload-status", has_text="Added to manual").wait_for()
    page.locator("#kb-table td", has_text="manual").wait_for()
    page.locator("#doc-table td", has_text="flux-manual.md").wait_for()
    page.fill("#search-query", "how many gigawatts")
    page.click("#search-form button[type=submit]")
    first = page.locator("#search-results li").first
    first.wait_for()
    assert "1.21 gigawatts" in first.inner_text() and "flux-manual.md" in first.inner_text()
    readme_shot(page, "knowledge-bases")


def test_the_dashboard_counter_moves_after_requests(page: Any, hearth: Server) -> None:
    page.goto(hearth.url + "/ui/#dashboard")
    until(page, lambda: page.inner_text("#stat-requests") != "-")
    before = int(page.inner_text("#stat-requests"))
    for _ in range(3):
        body = json.dumps({"model": "smol", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        req = urllib.request.Request(hearth.url + "/v1/chat/completions", data=body.encode(), method="POST")
        urllib.request.urlopen(req, timeout=60).read()
    until(page, lambda: int(page.inner_text("#stat-requests")) >= before + 3)
    until(page, lambda: page.inner_text("#stat-rps") != "-")
    assert page.locator("#chart-rps canvas").count() == 1
    for _ in range(3):  # a few more polls, so that the charts have lines
        urllib.request.urlopen(urllib.request.Request(hearth.url + "/v1/chat/completions", method="POST", data=json.dumps(
            {"model": "smol", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}).encode())).read()
        page.wait_for_timeout(1000)
    readme_shot(page, "dashboard")


def test_a_401_says_what_to_do_and_a_key_opens_the_console(page: Any, keyed: Server) -> None:
    page.goto(keyed.url + "/ui/")
    page.locator("#banner", has_text="Not authorized").wait_for()
    assert page.locator("#key-dialog").is_visible()
    assert "API key" in page.inner_text("#key-reason")
    page.fill("#key-input", ADMIN)
    page.click("#key-dialog button[value=save]")
    page.wait_for_selector("#model-a option[value=smol]", state="attached")
    assert page.is_hidden("#banner")
    assert ADMIN not in page.url
    page.goto(keyed.url + "/ui/#keys")  # the key stays for the tab's session
    page.fill("#key-form input[name=name]", "voice-app")
    page.fill("#key-form input[name=rpm]", "60")
    page.click("#key-form button[type=submit]")
    made = page.locator("#new-key code")
    made.wait_for()
    assert made.inner_text().startswith("hk-")
    row = page.locator("#keys-table tr", has_text="voice-app")
    row.wait_for()
    assert "60 rpm" in row.inner_text() and "active" in row.inner_text()
    readme_shot(page, "keys")
    page.once("dialog", lambda d: d.accept())
    row.locator("button", has_text="Revoke").click()
    page.locator("#keys-table tr", has_text="revoked").wait_for()
