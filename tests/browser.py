"""A real headless browser for the page tests: Chromium (Debian package `chromium`;
.ci/run installs it with apt). Tests skip, saying why, when it is not installed."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    apt = "apt-get is available: `apt-get install -y chromium`" if shutil.which("apt-get") else \
        "apt-get is not available on this machine"
    pytest.skip(f"no headless browser: chromium is not installed ({apt}; .ci/run installs it)")


def _flags(width: int, height: int, profile: Path) -> list[str]:
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-dev-shm-usage",
             f"--window-size={width},{height}", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    return flags


def dump_dom(url: str, tmp: Path, width: int = 1400, height: int = 1000) -> str:
    """The DOM after the page's scripts ran."""
    r = subprocess.run([chromium(), *_flags(width, height, tmp / "profile"), "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def screenshot(url: str, out: Path, tmp: Path, width: int = 1400, height: int = 1000) -> Path:
    r = subprocess.run([chromium(), *_flags(width, height, tmp / "profile"), f"--screenshot={out}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    return out


def selftest_result(dom: str) -> dict:
    m = re.search(r'<pre id="selftest-result">(.*?)</pre>', dom, re.S)
    assert m, "the page's self-test did not run (no #selftest-result in the DOM)"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


def page_width_probe(page: Path, out: Path) -> Path:
    """A copy of `page` that writes its scroll width into the DOM (for pages without a self-test)."""
    probe = ("<script>window.addEventListener('load',function(){var p=document.createElement('pre');"
             "p.id='width-probe';p.textContent=JSON.stringify({scroll_width:document.documentElement.scrollWidth,"
             "inner_width:window.innerWidth});document.body.appendChild(p);});</script>")
    out.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    return out


def width_probe_result(dom: str) -> dict:
    m = re.search(r'<pre id="width-probe">(.*?)</pre>', dom, re.S)
    assert m, "the width probe did not run"
    return json.loads(m.group(1).replace("&quot;", '"'))
