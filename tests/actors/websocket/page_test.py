#!/usr/bin/python3
"""The live page in a real browser: headless Chromium (Debian's `chromium`),
driven over the DevTools protocol with python3-websockets, against a real
cluster. The page must show a breaking article and a fraud alert pushed
after it loaded, and a user's feed with each score's parts; a page opened
later must show them at once (the recent past) and load the feed by itself.
Screenshots go to `TROUPE_TEST_OUTPUT` (default `test-output/page`).

  page_test.py TROUPE_BINARY
"""

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "support"))
from troupe_cluster import Cluster  # noqa: E402
from websocket_test import Kafka, alert, article, groups, ready, request, recv_json  # noqa: E402


class Browser:
    """Headless Chromium with one page at `url`, evaluated over DevTools."""

    def __init__(self, url):
        self.profile = tempfile.mkdtemp(prefix="troupe-chromium-")
        binary = shutil.which("chromium") or "/usr/bin/chromium"
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        port = None
        for line in self.proc.stderr:
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
            assert time.monotonic() < deadline, "chromium did not start its DevTools"
        assert port, "chromium exited before its DevTools listened"
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
            if pages:
                self.target = pages[0]["webSocketDebuggerUrl"]
                break
            assert time.monotonic() < deadline, "chromium opened no page"
        self.ids = itertools.count(1)
        self.ws = None
        # DevTools events seen while waiting for answers (exceptions, console).
        self.events = []

    async def connect(self):
        self.ws = await websockets.connect(self.target, max_size=2 ** 24)
        await self.command("Runtime.enable", {})
        # A desktop window, tall enough for the whole page in a screenshot.
        await self.command("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                            "mobile": False})

    async def command(self, method, params):
        """One DevTools command, its result."""
        mid = next(self.ids)
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if m.get("id") == mid:
                return m.get("result")
            self.events.append(m)

    async def eval(self, expression):
        mid = next(self.ids)
        await self.ws.send(json.dumps({"id": mid, "method": "Runtime.evaluate",
                                       "params": {"expression": expression,
                                                  "returnByValue": True}}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if m.get("id") == mid:
                return m["result"]["result"].get("value")
            self.events.append(m)

    async def until(self, expression, timeout=20):
        """Evaluates `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"page never showed: {expression}"
            # The page changes only on events: wait for the next one (a
            # DevTools message) or a tenth of a second.
            try:
                self.events.append(json.loads(await asyncio.wait_for(self.ws.recv(), 0.1)))
            except asyncio.TimeoutError:
                pass

    async def screenshot(self, name):
        """Writes the page as `name`.png to the test's output folder
        (`TROUPE_TEST_OUTPUT`, else `test-output/page` under the working
        folder), for a person to look at."""
        import base64
        folder = os.environ.get("TROUPE_TEST_OUTPUT", os.path.join(os.getcwd(), "test-output",
                                                                   "page"))
        os.makedirs(folder, exist_ok=True)
        mid = next(self.ids)
        await self.ws.send(json.dumps({"id": mid, "method": "Page.captureScreenshot",
                                       "params": {"format": "png",
                                                  "captureBeyondViewport": True}}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if m.get("id") == mid:
                break
            self.events.append(m)
        path = os.path.join(folder, f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(m["result"]["data"]))
        print("screenshot:", path)

    def errors(self):
        """Exceptions thrown in the page and console errors it logged."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"].get("type") == "error"):
                out.append(str(e["params"].get("args")))
        return out

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


async def page_shows_news_alerts_and_feeds(c):
    kafka = Kafka(c.kafka)
    probe = await websockets.connect(c.url("n2"))
    await request(probe, {"op": "subscribe", "channel": "breaking:probe", "id": 1})
    await ready(kafka, [probe])
    c.redis_cli("HSET", "prefs:ana", "bias", "0.3", "category:science", "1.0")
    token = c.token("operator", role="operator")
    url = f"http://127.0.0.1:{c.http['n1']}/?feed=ana"
    browser = Browser(url)
    try:
        await browser.connect()
        assert await browser.until("document.getElementById('node').textContent === 'node n1'")
        await browser.until("document.getElementById('status').textContent === 'connected'")
        # The operator pastes a token: the page sends it in its first
        # message (the gateway refuses a token in a URL).
        await browser.eval(f"document.getElementById('token').value = {json.dumps(token)};"
                           "document.getElementById('connect').click()")
        await browser.until(
            "document.getElementById('user').textContent === 'operator (operator)'")
        await browser.until("document.getElementById('alerts-note').textContent === 'subscribed'")
        kafka.send("articles", article("page-1", "science", 0.3, breaking=True,
                                       headline="Comet visible tonight"))
        kafka.send("fraud-alerts", alert("tx-page-1", "ana"), key="tx-page-1")
        kafka.flush()
        text = await browser.until(
            "(document.querySelector('#breaking li[data-id=\"page-1\"]') || {}).textContent")
        assert "Comet visible tonight" in text, text
        print("page shows breaking:", text)
        text = await browser.until(
            "(document.querySelector('#alerts li[data-id=\"tx-page-1\"]') || {}).textContent")
        assert "ana" in text and "990" in text, text
        print("page shows alert:", text)
        # The feed of ana, with the parts of each score.
        await browser.eval("document.getElementById('feed-go').click()")
        row = await browser.until(
            "Array.from(document.querySelectorAll('#feed tr')).map(r => "
            "Array.from(r.cells).map(c => c.textContent)).find(r => r[1] === "
            "'Comet visible tonight')")
        print("page shows feed row:", row)
        score, affinity, alignment, recency = (float(x) for x in row[3:7])
        assert affinity == 1.0 and alignment == 1.0, row
        assert abs(score - (0.4 * affinity + 0.3 * alignment + 0.3 * recency)) < 1e-3, row
        info = await browser.eval("document.getElementById('feed-info').textContent")
        assert "source ranker" in info, info
        await browser.screenshot("1-live-pushes")
    finally:
        browser.close()
    # A page opened later shows the recent past at once: the article and the
    # alert pushed before it loaded, and ana's feed without a click.
    later = Browser(url)
    try:
        await later.connect()
        await later.until("document.getElementById('status').textContent === 'connected'")
        text = await later.until(
            "(document.querySelector('#breaking li[data-id=\"page-1\"]') || {}).textContent")
        assert "Comet visible tonight" in text, text
        await later.eval(f"document.getElementById('token').value = {json.dumps(token)};"
                         "document.getElementById('connect').click()")
        text = await later.until(
            "(document.querySelector('#alerts li[data-id=\"tx-page-1\"]') || {}).textContent")
        assert "ana" in text, text
        row = await later.until(
            "Array.from(document.querySelectorAll('#feed tr')).map(r => "
            "Array.from(r.cells).map(c => c.textContent)).find(r => r[1] === "
            "'Comet visible tonight')")
        print("a page opened later shows the recent past and the feed:", row)
        # Each item once, though it came both as recent and (maybe) pushed.
        count = await later.eval("document.querySelectorAll('#breaking li[data-id=\"page-1\"]')"
                                 ".length")
        assert count == 1, count
        await later.screenshot("2-recent-past-on-load")
    finally:
        later.close()


async def console_shows_the_cluster_and_acts_for_operators_only(c):
    token = c.token("operator", role="operator")
    browser = Browser(f"http://127.0.0.1:{c.http['n1']}/")
    try:
        await browser.connect()
        await browser.until("document.getElementById('status').textContent === 'connected'")
        # Without a token, or with a user's, there is no cluster view.
        assert await browser.eval("document.getElementById('cluster-panel').hidden") is True
        ana = c.token("ana")
        await browser.eval(f"document.getElementById('token').value = {json.dumps(ana)};"
                           "document.getElementById('connect').click()")
        await browser.until("document.getElementById('user').textContent === 'ana'")
        assert await browser.eval("document.getElementById('cluster-panel').hidden") is True
        assert await browser.eval("document.querySelectorAll('#cluster-nodes tr').length") == 0
        await browser.eval(f"document.getElementById('token').value = {json.dumps(token)};"
                           "document.getElementById('connect').click()")
        rows = ("Array.from(document.querySelectorAll('#cluster-nodes tr'))"
                ".map(r => r.dataset.node + '=' + r.dataset.state).join(' ')")
        view = await browser.until(f"(({rows}) === 'n1=up n2=up n3=up') && ({rows})", 30)
        print("cluster view:", view)
        groups = await browser.until(
            "Array.from(document.querySelectorAll('#cluster-groups tr')).map(r => "
            "r.dataset.group + ' ' + r.cells[1].textContent + ' ' + r.cells[2].textContent)"
            ".filter(x => x.startsWith('websocket-broadcaster') && x.includes('n3'))[0]", 30)
        print("group row:", groups)
        assert "up" in groups, groups
        await browser.screenshot("3-console-all-up")
        # kill -9 of n3: its row changes (the failure detector, then the
        # console's push at once).
        t0 = time.monotonic()
        os.kill(c.pids["n3"], signal.SIGKILL)
        await browser.until("(document.querySelector('#cluster-nodes tr[data-node=\"n3\"]') || "
                            "{dataset: {}}).dataset.state === 'down'", 10)
        seen = time.monotonic() - t0
        print(f"n3 shown down {seen:.2f} s after kill -9")
        assert seen < 2.5, seen
        await browser.screenshot("4-console-node-lost")
        # troupe up starts it again: back up.
        await browser.until(f"({rows}) === 'n1=up n2=up n3=up'", 90)
        print("n3 shown up again")
        # An alert: the produce-to-alert chart gets a point.
        kafka = Kafka(c.kafka)
        kafka.send("fraud-alerts", alert("tx-console-1", "ana"), key="tx-console-1")
        kafka.flush()
        await browser.until("!!document.querySelector('#alerts li[data-id=\"tx-console-1\"]')")
        await browser.until("!!document.querySelector("
                            "'#charts .chart[data-series=\"produce-to-alert p99 ms\"]')", 10)
        # Traffic through the ranker: its chart shows it.
        async with c.connect("n1", "ana") as ws:
            assert (await recv_json(ws))["ok"]
            for i in range(30):
                await request(ws, {"op": "feed", "k": 3, "id": f"f{i}"})
        busiest = await browser.until(
            "Number((document.querySelector('#charts .chart[data-series=\"ranker events/s\"]')"
            " || {dataset: {max: 0}}).dataset.max) > 0 && "
            "document.querySelector('#charts .chart[data-series=\"ranker events/s\"]')"
            ".dataset.max", 20)
        print("ranker events/s chart peak:", busiest)
        # Charts drawn in the page have points after a few seconds.
        points = await browser.until(
            "Math.max(0, ...Array.from(document.querySelectorAll('#charts .chart'))"
            ".map(d => Number(d.dataset.points))) >= 3 && "
            "Array.from(document.querySelectorAll('#charts .chart')).map(d => "
            "d.dataset.series + ':' + d.dataset.points).join(', ')", 30)
        print("charts:", points)
        # Kill an instance another node runs, from n1's page: that node's
        # console kills it (its supervisor restarts it), and the view counts
        # the restart.
        restarts = ("Number(document.querySelector('#cluster-groups "
                    "tr[data-group=\"websocket-broadcaster\"]').cells[5].textContent)")
        # Every instance at home again after n3's return (n2 runs #1).
        await browser.until("document.querySelector('#cluster-groups "
                            "tr[data-group=\"websocket-broadcaster\"]').cells[1].textContent "
                            "=== 'n1: #0n2: #1n3: #2'", 30)
        before = await browser.eval(restarts)
        kmark = c.mark()
        target = await browser.eval(
            "window.confirm = () => true;"
            "(() => { const chip = Array.from(document.querySelectorAll("
            "'#cluster-groups tr[data-group=\"websocket-broadcaster\"] .chip'))"
            ".find(c => c.textContent === 'n2: #1');"
            " chip.click(); return chip.dataset.instance; })()")
        await browser.until("document.getElementById('cluster-info').textContent === "
                            f"'kill {target}: done'", 20)
        c.wait_for(rf"\[n2\] page command kill {target} \(by operator", 10, kmark)
        now = await browser.until(f"({restarts}) > {before} && ({restarts})", 20)
        print(f"killed {target} on n2 from n1's page: restarts {before} -> {now}")
        # Restart a group on every node that hosts it.
        await browser.eval("window.confirm = () => true;"
                           "document.querySelector('#cluster-groups tr[data-group=\"ranker\"] "
                           "button').click()")
        await browser.until("document.getElementById('cluster-info').textContent === "
                            "'restart ranker: done'", 30)
        await browser.screenshot("6-console-instance-killed")
        # An operator's action: drain n2, confirmed, audited with the token's user.
        mark = c.mark()
        await browser.eval("window.confirm = () => true;"
                           "document.querySelector('#cluster-nodes tr[data-node=\"n2\"] "
                           "button').click()")
        await browser.until("document.getElementById('cluster-info').textContent === "
                            "'drain n2: done'", 20)
        await browser.until("(document.querySelector('#cluster-nodes tr[data-node=\"n2\"]') "
                            "|| {textContent: ''}).textContent.includes('drained')", 10)
        line = c.wait_for(r"audit who=operator from=127\.0\.0\.1:\d+ source=page "
                          r"command=\"?drain n2", 10, mark).group(0)
        print("audited:", line)
        await browser.screenshot("5-console-n2-drained")
        await browser.eval("window.confirm = () => true;"
                           "document.querySelector('#cluster-nodes tr[data-node=\"n2\"] "
                           "button').click()")
        await browser.until("document.getElementById('cluster-info').textContent === "
                            "'undrain n2: done'", 20)
        # The narrow layout.
        await browser.command("Emulation.setDeviceMetricsOverride",
                              {"width": 480, "height": 900, "deviceScaleFactor": 1,
                               "mobile": True})
        await browser.screenshot("7-console-narrow")
        assert browser.errors() == [], browser.errors()
    finally:
        browser.close()
    # A user's token: no cluster view, and the console's ops are refused.
    async with c.connect("n1", "ana") as ws:
        assert (await recv_json(ws))["ok"]
        r = await request(ws, {"op": "subscribe", "channel": "cluster", "id": 1})
        assert r["type"] == "error" and r["error"] == "unauthorized", r
        r = await request(ws, {"op": "command", "action": "drain", "target": "n2", "id": 2})
        assert r["type"] == "error" and r["error"] == "unauthorized", r
    async with c.connect("n1") as anon:
        r = await request(anon, {"op": "command", "action": "drain", "target": "n2", "id": 3})
        assert r["type"] == "error" and r["error"] == "unauthorized", r


CASES = {
    "page": page_shows_news_alerts_and_feeds,
    "console": console_shows_the_cluster_and_acts_for_operators_only,
}


def main():
    binary = sys.argv[1]
    case = sys.argv[2] if len(sys.argv) > 2 else "page"
    with Cluster(binary, groups(rate_limit=1000)) as c:
        asyncio.run(asyncio.wait_for(CASES[case](c), 200))
    print(f"{case}: ok")


if __name__ == "__main__":
    main()
