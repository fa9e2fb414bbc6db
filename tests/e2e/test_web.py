"""`controlroom web` in a real headless Chromium (Debian's package; .ci/run installs it), driven over the DevTools
protocol by the small client below (aiohttp, which textual-serve brings).

The page's text is read from the terminal it draws (xterm.js's buffer, through Runtime.evaluate): the page keeps its
terminal in a closure, so a script the browser runs before the page (Page.addScriptToEvaluateOnNewDocument) notes
the object assigned to a ``terminal`` property, which is how textual-serve's client holds it. Nothing of the page
served is changed. Servers, fleets and browsers are started on 127.0.0.1 by each test and stopped by it; every wait
polls with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import run_cli

DEADLINE = 60.0
WIDTH, HEIGHT = 1600, 1000  # CSS pixels of the page: the app's wide layout
ME = pwd.getpwuid(os.getuid()).pw_name  # who the server says drives (the CLI's peer credentials)
TOKEN = "t0ken-for-the-browser-test-8f3a9c2e"

NOTE_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    window.__terminal = value;
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
  },
});
"""
SCREEN = """(() => {
  const t = window.__terminal;
  if (!t) return null;
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) { const l = b.getLine(b.viewportY + i); rows.push(l ? l.translateToString(true) : ""); }
  return rows.join("\\n");
})()"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is needed for the browser tests (.ci/run installs Debian's chromium)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(cond, seconds: float, what: str, detail=None, every: float = 0.2):
    """Poll an async condition until it is truthy; fail at the deadline saying what was awaited (and detail())."""
    deadline = time.monotonic() + seconds
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"; {await detail()}" if detail else ""
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}{more}")
        await asyncio.sleep(every)


class Page:
    """One tab of a headless Chromium, over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            fut = self._waiting.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def send(self, method: str, **params) -> dict:
        no = next(self._ids)
        fut = self._waiting[no] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": no, "method": method, "params": params})
        data = await asyncio.wait_for(fut, 30)
        if "error" in data:
            raise AssertionError(f"{method}: {data['error']}")
        return data["result"]

    async def eval(self, expression: str):
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await until(lambda: self.eval("document.readyState === 'complete' && location.href"), 30,
                    f"{url} loaded")

    async def screen(self) -> str:
        return await self.eval(SCREEN) or ""

    async def wait_for(self, *texts: str, absent: tuple[str, ...] = (), seconds: float = DEADLINE) -> str:
        """The screen once it shows every one of ``texts`` and none of ``absent``."""
        async def shown():
            screen = await self.screen()
            return screen if all(t in screen for t in texts) and not any(t in screen for t in absent) else None
        what = f"{texts} in the browser" + (f", without {absent}" if absent else "")
        return await until(shown, seconds, what, detail=self.screen)

    async def press(self, key: str) -> None:
        await self.eval("window.__terminal.focus()")
        for kind in ("keyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", type=kind, key=key, text=key if kind == "keyDown" else "",
                            code=f"Key{key.upper()}", windowsVirtualKeyCode=ord(key.upper()))

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class Browser:
    """A headless Chromium of its own (its profile in tmp), reached over DevTools on a port it picks."""

    def __init__(self, tmp: Path, http: aiohttp.ClientSession) -> None:
        self.profile = tmp / "chromium-profile"
        self.http = http
        self.proc = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
             "--window-size=1400,900", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.port = 0

    async def start(self) -> Browser:
        active = self.profile / "DevToolsActivePort"

        async def port():
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}")
            lines = active.read_text().split() if active.exists() else []
            return int(lines[0]) if lines else 0
        self.port = await until(port, 30, "chromium's DevTools port")
        return self

    async def page(self) -> Page:
        async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as r:
            target = await r.json()
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                        mobile=False)
        await page.send("Page.addScriptToEvaluateOnNewDocument", source=NOTE_TERMINAL)
        return page

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


class Web:
    """`controlroom web` on 127.0.0.1, as a person starts it; its output kept to check the token is not in it."""

    def __init__(self, tmp: Path, config: Path, *args: str, token: str | None = TOKEN) -> None:
        self.port = free_port()
        self.out = tmp / f"web-{self.port}.out"
        argv = [sys.executable, "-m", "controlroom.cli", "web", "--config", str(config),
                "--listen", f"127.0.0.1:{self.port}", *args]
        if token is not None:
            (tmp / "token").write_text(token + "\n")
            argv += ["--token-file", str(tmp / "token")]
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}  # the screenshot in the app's colours
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    async def started(self, http: aiohttp.ClientSession) -> Web:
        async def answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"controlroom web exited {self.proc.returncode}: {self.output()}")
            try:
                async with http.get(self.url + "/", allow_redirects=False) as r:
                    return r.status
            except aiohttp.ClientConnectionError:
                return None
        await until(answers, 30, "controlroom web answering")
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # textual-serve's way out; its sessions' apps end with it
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def stopped(request):
    """stopped(thing): stop it (a Web, a Browser) after the test, whatever happened."""
    things = []
    yield lambda thing: (things.append(thing), thing)[1]
    for thing in reversed(things):
        thing.stop()


# ------------------------------------------------------------------------------------------------ the command


def test_a_non_loopback_address_without_a_token_file_is_refused_in_one_line(fleet):
    res = run_cli("web", "--config", str(fleet.config_path), "--listen", "0.0.0.0:8765")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "needs --token-file" in res.stderr, res.stderr


def test_acting_is_allowed_on_loopback_only_and_a_short_token_is_refused_without_being_shown(fleet, tmp_path):
    (tmp_path / "tok").write_text(TOKEN + "\n")
    res = run_cli("web", "--config", str(fleet.config_path), "--listen", "10.1.2.3:8765",
                  "--token-file", str(tmp_path / "tok"), "--allow-acting")
    assert res.returncode == 2 and "loopback" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    res = run_cli("web", "--config", str(fleet.config_path), "--allow-acting")
    assert res.returncode == 2 and "needs --token-file" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    (tmp_path / "short").write_text("s3cr3t\n")
    res = run_cli("web", "--config", str(fleet.config_path), "--token-file", str(tmp_path / "short"))
    assert res.returncode == 2 and "at least 16" in res.stderr and "s3cr3t" not in res.stderr, res.stderr
    res = run_cli("web", "--config", str(tmp_path / "missing.toml"))
    assert res.returncode == 2 and "missing.toml" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    res = run_cli("web", "--listen", "nowhere")
    assert res.returncode == 2 and "HOST:PORT" in res.stderr and res.stderr.count("\n") == 1, res.stderr


# ------------------------------------------------------------------------------------------------ the browser


@pytest.mark.slow
async def test_a_watcher_sees_a_deploy_started_from_the_cli_progress_live_in_the_browser(
        make_fleet, tmp_path, http, stopped):
    fleet = make_fleet(6, "web006=slow:6")  # the last host takes its time: the deploy is seen under way
    web = stopped(Web(tmp_path, fleet.config_path))
    await web.started(http)
    browser = await stopped(Browser(tmp_path, http)).start()
    page = await browser.page()
    await page.goto(f"{web.url}/?token={TOKEN}")
    assert await page.eval("location.href") == f"{web.url}/"  # the token left the address bar for a cookie
    await page.wait_for("Rollout", "Deploy log", "r2306 -> r2307", "READY", "staged, not deployed")

    deploy = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "--auto", "--config",
                               str(fleet.config_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    try:
        # under way: the canary and stage 1 done, the last phase running; the CLI drives, this browser watches
        screen = await page.wait_for("✓ canary", "✓ stage 1", "▶ RUNNING", "(CLI, driving)", "you (web, watching)")
        shot = await page.send("Page.captureScreenshot", format="png")
        png = tmp_path / "controlroom-web.png"
        png.write_bytes(base64.b64decode(shot["data"]))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        rows = screen.splitlines()
        title = next(i for i, row in enumerate(rows) if "1 Rollout" in row)  # the rollout pane's header
        assert "r2306 -> r2307" in rows[title + 1] and f"▶ RUNNING  by {ME}" in rows[title + 1], rows[title + 1]
        assert "DEPLOY START r2306 -> r2307 to 6 hosts in 3 phases" in screen  # the deploy log beside it
        assert "DONE: r2306 -> r2307" not in screen
        # the whole pane says done: the summary, and the header above it. A loaded machine showed one frame with
        # the summary drawn and the header lines still to come; a header that stayed RUNNING fails this wait
        screen = await page.wait_for("DONE: r2306 -> r2307", "6 done · 0 failed", f"✓ DONE  by {ME}", "done after",
                                     absent=("▶ RUNNING", "running for"), seconds=120)
        assert "▶ RUNNING" not in screen
        out, _ = deploy.communicate(timeout=60)
        assert deploy.returncode == 0, out
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait(10)
    await page.close()
    assert TOKEN not in web.output()


@pytest.mark.slow
async def test_a_browser_without_the_token_gets_nothing_and_a_read_only_browsers_d_is_refused_saying_why(
        make_fleet, tmp_path, http, stopped):
    fleet = make_fleet(3)
    web = stopped(Web(tmp_path, fleet.config_path))
    await web.started(http)

    # a plain HTTP client: the page, its script, its websocket, each a 401 without the token or with a wrong one
    for path in ("/", "/static/js/textual.js", "/ws", "/?token=" + "x" * len(TOKEN)):
        async with http.get(web.url + path, allow_redirects=False) as r:
            body = await r.text()
            assert r.status == 401 and "textual" not in body.lower() and "terminal" not in body, (path, body)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(web.url + "/ws")
    assert refused.value.status == 401
    async with http.get(web.url + "/", cookies={"controlroom_token": "wrong" * 8}) as r:
        assert r.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as elsewhere:  # the token, but a page of another origin
        await http.ws_connect(f"{web.url}/ws?token={TOKEN}", headers={"Origin": "https://evil.example"})
    assert elsewhere.value.status == 403

    browser = await stopped(Browser(tmp_path, http)).start()
    page = await browser.page()
    await page.goto(f"{web.url}/")
    assert await page.eval("performance.getEntriesByType('navigation')[0].responseStatus") == 401
    assert await page.eval("document.querySelector('#terminal') === null && !window.__terminal")
    assert "token is needed" in await page.eval("document.body.innerText")

    # with it: the app, read-only; d is sent anyway and the server's refusal is shown with its reason
    await page.goto(f"{web.url}/?token={TOKEN}")
    assert await page.eval("document.cookie") == ""  # the cookie is HttpOnly: no script of the page reads it
    assert TOKEN not in await page.eval("document.documentElement.outerHTML")
    # attached: the revisions come from the server, after the hello that made this app read-only
    await page.wait_for("Rollout", "r2306 -> r2307", "READY", "new_search")
    await page.press("d")
    screen = await page.wait_for("refused", "read-only")
    assert "Deploy r2307?" not in screen
    await page.close()
    assert TOKEN not in web.output()


@pytest.mark.slow
async def test_with_allow_acting_on_loopback_a_browser_holding_the_token_may_act(make_fleet, tmp_path, http, stopped):
    fleet = make_fleet(3)
    web = stopped(Web(tmp_path, fleet.config_path, "--allow-acting"))
    await web.started(http)
    browser = await stopped(Browser(tmp_path, http)).start()
    page = await browser.page()
    await page.goto(f"{web.url}/?token={TOKEN}")
    screen = await page.wait_for("Rollout", "r2306 -> r2307", "READY", "new_search")
    assert "read-only" not in screen
    await page.press("d")
    await page.wait_for("Deploy r2307?")  # the confirmation, as in the terminal; nothing is shipped without its y
    await page.close()
    assert {(fleet.dir / "hosts" / f"web{i:03d}" / "REVISION").read_text().strip() for i in (1, 2, 3)} == {"r2306"}
