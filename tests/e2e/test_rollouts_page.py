"""The completions page (`grpolab rollouts RUN --html`) in a real browser: headless Chromium over DevTools.

Chromium comes from Debian's packages (`make browser`, run by .ci/run). The page of a run made by the
suite must render the run's completions, narrow them with a filter, and request nothing from a network.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grpolab.rundir import rollouts

pytestmark = pytest.mark.slow  # trains tiny runs
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(os.environ.get("GRPOLAB_SCREENSHOT_DIR", tempfile.gettempdir())) / "rollouts-page.png"

if BROWSER is None:
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: `make browser` installs it (Debian package)", pytrace=False)
    pytest.skip("chromium is not installed: `make browser` (root, Debian) installs it", allow_module_level=True)


class DevTools:
    """A minimal Chrome DevTools Protocol client: one page, commands by id, events kept in order."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=timeout))
            if reply.get("id") == self.next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def set_input(self, element_id: str, value: str) -> None:
        """Set a control's value and fire its input event, as typing or picking would."""
        self.evaluate(
            f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); e.value = {json.dumps(value)};"
            " e.dispatchEvent(new Event('input')); })()"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1400,900", "about:blank"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        ws_url = None
        for _ in range(200):
            line = proc.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                ws_url = found.group(1)
                break
        assert ws_url, "chromium printed no DevTools address"
        tools = DevTools(ws_url)
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        tools.session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        yield tools
    finally:
        proc.kill()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def test_page_renders_filters_and_stays_offline(smoke_run: Path, browser: DevTools) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "grpolab.cli", "rollouts", str(smoke_run), "--html"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = Path(proc.stdout.strip().splitlines()[-1])
    assert page == smoke_run / "rollouts.html" and page.is_file()
    frame = rollouts.load(smoke_run)
    browser.call("Network.enable")
    browser.call("Page.enable")
    browser.events.clear()
    browser.call("Page.navigate", url=page.resolve().as_uri())
    for _ in range(100):
        if browser.evaluate("document.body && document.body.dataset.ready === '1'"):
            break
        browser.evaluate("new Promise(r => setTimeout(r, 100))")
    rows = browser.evaluate("document.querySelectorAll('#body tr:not(.empty)').length")
    assert rows == min(len(frame), 300), "the table shows the run's completions"
    shown = browser.evaluate("[...document.querySelectorAll('#body td.completion')].map(td => td.textContent)")
    assert set(shown) <= set(frame["completion"]) and shown[0] == frame["completion"].iloc[0]
    # filter by the last step: only its completions remain
    last = int(frame["step"].max())
    browser.set_input("step", str(last))
    steps = browser.evaluate(
        "[...document.querySelectorAll('#body tr:not(.empty)')].map(tr => Number(tr.dataset.step))"
    )
    assert steps and set(steps) == {last} and len(steps) == int((frame["step"] == last).sum()) < rows
    # text search over a completion of that step narrows it further
    needle = frame[frame["step"] == last]["completion"].iloc[0]
    browser.set_input("search", needle)
    found = browser.evaluate("[...document.querySelectorAll('#body td.completion')].map(td => td.textContent)")
    assert found and all(needle.lower() in t.lower() for t in found)
    browser.set_input("search", "no completion holds this text")
    assert browser.evaluate("document.querySelector('#body tr.empty') !== null")
    browser.set_input("search", needle)
    # each reward's score cell is coloured
    colours = browser.evaluate("[...document.querySelectorAll('#body td.score')].map(td => td.style.background)")
    assert colours and all(c.startswith("rgb") for c in colours)
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    SCREENSHOT.write_bytes(base64.b64decode(shot))
    requested = [
        e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested, "DevTools reported no request at all: the check would not see a network request"
    assert all(u == page.resolve().as_uri() or u.startswith("data:") for u in requested), requested


def test_page_cannot_reach_the_network(tmp_path: Path, browser: DevTools) -> None:
    """The page's policy blocks a request even when its content asks for one (the check above can fail)."""
    from grpolab.rundir.rollouts_html import render

    data = {"name": "x", "run_dir": "x", "names": [], "ranges": {}, "rows": [], "total_rows": 0}
    html = render(data).replace("</body>", '<img src="http://127.0.0.1:9/probe.png"></body>')
    page = tmp_path / "probe.html"
    page.write_text(html)
    browser.events.clear()
    browser.call("Page.navigate", url=page.as_uri())
    browser.evaluate("new Promise(r => setTimeout(r, 500))")
    blocked = [e for e in browser.events if e.get("method") == "Network.loadingFailed"]
    sent = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert "http://127.0.0.1:9/probe.png" in sent, sent  # DevTools sees the attempt ...
    assert any(e["params"].get("blockedReason") == "csp" for e in blocked), blocked  # ... and the policy stops it
