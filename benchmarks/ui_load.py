"""How fast the console at /ui loads in a cold browser tab, and how much it weighs: target < 300 ms, < 300 KB.

A hearth with one remote model (nothing to load) serves the console; Debian's Chromium (through Playwright)
opens each page in a fresh browser context (empty cache, no service worker), `--rounds` times. Printed:
the Navigation Timing load event (p50, max), the bytes transferred, and, as the anchor measured in the same
run, a blank page served by the same server (what any page costs at least: the tab, the connection).

    .venv/bin/python benchmarks/ui_load.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).parent))
from _client import free_port, wait_ready

CONFIG = """
models:
  remote:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: m
observe:
  request_log: false
keys:
  path: {db}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-ui-"))
    (tmp / "h.yaml").write_text(CONFIG.format(db=tmp / "keys.db"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "serve", "--config", str(tmp / "h.yaml"), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(port)
        exe = shutil.which("chromium") or "chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            print(f"{'page':28} {'load p50':>9} {'load max':>9} {'bytes':>9}")
            for name, path in [("blank (anchor)", "/ui/vendor/uPlot-LICENSE.txt"), ("playground", "/ui/#playground"),
                               ("knowledge bases", "/ui/#kbs"), ("dashboard", "/ui/#dashboard"),
                               ("keys", "/ui/#keys")]:
                loads, sizes = [], []
                for _ in range(a.rounds):
                    ctx = browser.new_context()
                    page = ctx.new_page()
                    got: list[int] = []
                    page.on("response", lambda r, got=got: got.append(len(r.body()) if r.ok else 0))
                    page.goto(base + path, wait_until="load")
                    loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
                    page.wait_for_load_state("networkidle")
                    sizes.append(sum(got))
                    ctx.close()
                print(f"{name:28} {statistics.median(loads):7.0f}ms {max(loads):7.0f}ms {max(sizes):9d}")
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
