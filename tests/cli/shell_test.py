#!/usr/bin/python3
"""`troupe shell` and each node's /metrics on a real three-node cluster
(`troupe up`, embedded Kafka, redis-server); the interactive shell driven
through tmux, the metrics scraped by a real Prometheus server.

  shell_test.py TROUPE_BINARY CASE

Each case starts its own cluster, asserts, and stops it; every wait is
bounded, and every process it starts it stops by PID.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from troupe_cluster import Cluster, free_port  # noqa: E402

MODEL = os.path.join(HERE, "..", "..", "actors", "fraud_detector", "model", "fraud.json")

GROUPS = f"""
[[group]]
name = "fraud-detector"
domain = "fraud-detector"
instances = 3
intensity = 20
period = "10s"
settings = {{ model = "{MODEL}" }}

[[group]]
name = "ranker"
domain = "ranker"
instances = 2

[[group]]
name = "websocket-broadcaster"
domain = "websocket-broadcaster"
instances = 3
settings = {{ rate_limit = 1000 }}
"""


class Shell:
    def __init__(self, cluster):
        self.c = cluster

    def run(self, *args, stdin=None, timeout=30, check_rc=None):
        """Runs `troupe shell --config CONF ARGS`; returns (rc, stdout, stderr)."""
        p = subprocess.run([self.c.binary, "shell", "--config", self.c.conf, *args],
                           input=stdin, capture_output=True, text=True, timeout=timeout)
        if check_rc is not None:
            assert p.returncode == check_rc, (args, p.returncode, p.stdout, p.stderr)
        return p.returncode, p.stdout, p.stderr

    def json(self, command, **kw):
        rc, out, err = self.run("--json", "-c", command, **kw)
        assert rc == 0, (command, rc, out, err)
        return json.loads(out)

    def until(self, command, pred, timeout=30):
        """Runs `command` (JSON) until `pred` holds for its answer."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.json(command)
            if pred(doc):
                return doc
            assert time.monotonic() < deadline, (command, doc)
            with self.c.cond:
                self.c.cond.wait(0.2)


def read_until(stream, pattern, timeout=30):
    """Output of `stream` (a pipe) until a line matches `pattern` (bounded).
    Reads the file descriptor itself: a buffered reader would hide lines
    from select()."""
    fd = stream.fileno()
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        if any(re.search(pattern, line) for line in seen.splitlines()):
            return seen
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} in:\n{seen}"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"the stream ended before {pattern!r}:\n{seen}"
        seen += chunk.decode(errors="replace")


def group(doc, name):
    return next(g for g in doc["groups"] if g["name"] == name)


def metrics(c, node):
    url = f"http://127.0.0.1:{c.http[node]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        return r.read().decode()


def one_shot_commands(c):
    sh = Shell(c)
    doc = sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    fd = group(doc, "fraud-detector")
    assert fd["instances"] == 3 and fd["declared"] == 3, fd
    assert sorted(p["node"] for p in fd["where"]) == ["n1", "n2", "n3"], fd
    assert sorted(i for p in fd["where"] for i in p["instances"]) == [0, 1, 2], fd
    assert group(doc, "ranker")["instances"] == 2, doc
    # The first reachable node's view: every member up once it has seen
    # them all (its groups may be placed before the last peer is up there).
    nodes = sh.until("nodes", lambda d: all(n["state"] == "up" for n in d["nodes"]))
    assert [(n["name"], n["state"]) for n in nodes["nodes"]] == \
        [("n1", "up"), ("n2", "up"), ("n3", "up")], nodes
    assert all("websocket-broadcaster" in n["groups"] for n in nodes["nodes"]), nodes
    # The text forms, for people.
    rc, out, _ = sh.run("-c", "nodes", check_rc=0)
    assert re.search(r"^n2\s+up\s+127\.0\.0\.1:\d+\s+\S+\s+.*fraud-detector #\d", out, re.M), out
    rc, out, _ = sh.run("-c", "tree n2", check_rc=0)
    assert "n2.root (supervisor, rest_for_one)" in out, out
    assert re.search(r"^\s+n2\.groups \(running, supervisor, permanent", out, re.M), out
    assert re.search(r"^\s+fraud-detector\.workers .*\n\s+fraud-detector/0 \(running", out,
                     re.M), out
    rc, out, _ = sh.run("-c", "help", check_rc=0)
    for cmd in ("nodes", "groups", "tree", "stats", "crashes", "restart", "kill", "publish"):
        assert re.search(rf"^  {cmd}\b", out, re.M), (cmd, out)
    rc, out, _ = sh.run("-c", "help kill", check_rc=0)
    assert "killed_by_operator" in out, out
    # Mistakes get a helpful message and exit code 2.
    rc, out, err = sh.run("-c", "frobnicate", check_rc=2)
    assert "unknown command 'frobnicate'" in err and "help" in err, err
    rc, out, err = sh.run("-c", "kill nosuchgroup", check_rc=2)
    assert "no group 'nosuchgroup'" in err, err
    rc, out, err = sh.run("-c", "kill fraud-detector/7", check_rc=2)
    assert "instances 0 to 2" in err, err
    rc, out, err = sh.run("-c", "publish articles {not json", check_rc=2)
    assert "not valid JSON" in err, err
    rc, out, err = sh.run("--connect", "n9", "-c", "nodes", check_rc=2)
    assert "no node of" in err, err
    rc, out, err = sh.run("--json", "-c", "tree n9", check_rc=2)
    assert json.loads(out)["error"] == "usage", out
    # publish reaches Kafka: the group's article window fills on every node.
    art = {"schema": 1, "id": "shell-1", "headline": "From the shell", "category": "world",
           "bias": 0.5, "published_at": int(time.time() * 1000), "breaking": False}
    assert sh.json(f"publish articles {json.dumps(art)}")["published"] == "articles"
    deadline = time.monotonic() + 30
    while not all(c.health(n)["articles"] >= 1 for n in c.http):
        assert time.monotonic() < deadline, [c.health(n) for n in c.http]
        with c.cond:
            c.cond.wait(0.2)
    # model: status on every node, a bad path refused (the old model stays),
    # a good one loaded.
    st = sh.json("model status")
    assert sorted(r["node"] for r in st["nodes"]) == ["n1", "n2", "n3"], st
    assert all(r["model"].endswith("fraud.json)") for r in st["nodes"]), st
    rc, out, err = sh.run("-c", "model load /nonexistent/model.json", check_rc=1)
    assert err.count("/nonexistent/model.json") >= 1, err
    assert sh.json("model status") == st
    loaded = sh.json(f"model load {MODEL}")
    assert len(loaded["nodes"]) == 3 and all("loaded" in r for r in loaded["nodes"]), loaded
    # stats: figures for each group over one second.
    st = sh.json("stats ranker")
    assert [g["name"] for g in st["groups"]] == ["ranker"], st
    assert 0.9 <= st["interval_s"] <= 3, st


def kill_shows_restart_and_reason(c):
    sh = Shell(c)
    sh.until("groups", lambda d: group(d, "fraud-detector")["state"] == "up")
    rc, out, _ = sh.run("-c", "kill fraud-detector/1", check_rc=0)
    assert re.search(r"^n\d: killed fraud-detector #1 \(fraud-detector/0\)$", out, re.M), out
    doc = sh.until("groups", lambda d: group(d, "fraud-detector")["restarts"] >= 1
                   and group(d, "fraud-detector")["state"] == "up")
    fd = group(doc, "fraud-detector")
    assert fd["restarts"] == 1, fd
    victim = next(p for p in fd["where"] if 1 in p["instances"])
    assert victim["worker_restarts"] == 1, fd
    crashes = sh.json("crashes fraud-detector")["crashes"]
    assert len(crashes) == 1, crashes
    assert crashes[0]["node"] == victim["node"], (crashes, victim)
    assert crashes[0]["reason"].startswith("killed_by_operator"), crashes
    assert crashes[0]["action"] in ("restarted", "restart_delayed"), crashes
    # The whole group, on every node: three more restarts.
    sh.run("-c", "kill fraud-detector", check_rc=0)
    doc = sh.until("groups", lambda d: group(d, "fraud-detector")["restarts"] >= 4
                   and group(d, "fraud-detector")["state"] == "up")
    assert group(doc, "fraud-detector")["restarts"] == 4, doc
    rc, out, _ = sh.run("-c", "crashes", check_rc=0)
    assert len(re.findall(r"killed_by_operator", out)) == 4, out
    # The node's metrics say the same (rendered once a second).
    node = victim["node"]
    want = [f'troupe_group_restarts_total{{node="{node}",group="fraud-detector",kind="worker"}} 2',
            f'troupe_group_recent_crashes{{node="{node}",group="fraud-detector",'
            'reason="killed_by_operator"} 2']
    deadline = time.monotonic() + 10
    while not all(w in metrics(c, node) for w in want):
        assert time.monotonic() < deadline, (want, metrics(c, node))
        with c.cond:
            c.cond.wait(0.2)
    # restart: the group's supervisor stops it and starts it again.
    rc, out, _ = sh.run("-c", "restart ranker", check_rc=0)
    assert len(re.findall(r"ranker restarted", out)) == 2, out
    sh.until("groups", lambda d: group(d, "ranker")["state"] == "up")


def commands_from_standard_input(c):
    sh = Shell(c)
    script = "# a comment\nnodes\n\ngroups\nfrobnicate\nhelp tree\n"
    rc, out, err = sh.run(stdin=script)
    assert rc == 2, (rc, out, err)  # the worst exit code of the script
    assert "NODE" in out and "GROUP" in out and "tree [node]" in out, out
    assert "unknown command 'frobnicate'" in err, err
    rc, out, err = sh.run("--json", stdin="nodes\ngroups\n")
    assert rc == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == 2 and "nodes" in docs[0] and "groups" in docs[1], docs


def a_lost_node_is_reported_and_retried(c):
    sh = Shell(c)
    sh.until("nodes", lambda d: all(n["state"] == "up" for n in d["nodes"]))
    os.kill(c.pids["n2"], signal.SIGSTOP)
    try:
        started = time.monotonic()
        rc, out, err = sh.run("--json", "--timeout", "1", "-c", "nodes", timeout=30)
        took = time.monotonic() - started
        assert rc == 0, (rc, out, err)
        doc = json.loads(out)
        n2 = next(n for n in doc["nodes"] if n["name"] == "n2")
        assert "unreachable" in n2["state"], doc
        assert "n2" in doc["unreachable"], doc
        assert took < 15, took
        print(f"a frozen node reported unreachable in {took:.1f} s (timeout 1 s)")
        rc, out, err = sh.run("--timeout", "1", "-c", "groups", timeout=30)
        assert rc == 0 and "(n2 unreachable:" in out, (rc, out, err)
    finally:
        os.kill(c.pids["n2"], signal.SIGCONT)
    sh.until("nodes", lambda d: all(n["state"] == "up" for n in d["nodes"]), timeout=60)
    # One session, kept across the loss: it reports n3 unreachable, then
    # dials it again for the next command once n3 is back.
    os.kill(c.pids["n3"], signal.SIGSTOP)
    p = subprocess.Popen([c.binary, "shell", "--config", c.conf, "--timeout", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        p.stdin.write("nodes\n")
        p.stdin.flush()
        out = read_until(p.stdout, r"^n3\s+\S*unreachable")
        assert re.search(r"^n1\s+up", out, re.M), out
        os.kill(c.pids["n3"], signal.SIGCONT)
        sh.until("nodes", lambda d: all(n["state"] == "up" for n in d["nodes"]), timeout=60)
        p.stdin.write("nodes\n")
        p.stdin.flush()
        read_until(p.stdout, r"^n3\s+up\s")
        p.stdin.close()
        assert p.wait(30) == 0
    finally:
        os.kill(c.pids["n3"], signal.SIGCONT)
        if p.poll() is None:
            p.kill()
            p.wait(10)
    # With every node gone the shell says so and exits 3.
    conf = c.conf
    for pid in c.pids.values():
        os.kill(pid, signal.SIGSTOP)
    try:
        p = subprocess.run([c.binary, "shell", "--config", conf, "--timeout", "0.5", "-c",
                            "nodes"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
        assert "cannot reach cluster" in p.stderr, p.stderr
    finally:
        for pid in c.pids.values():
            os.kill(pid, signal.SIGCONT)


def interactive_session_in_tmux(c):
    if not shutil.which("tmux"):
        raise AssertionError("tmux is not installed (scripts/install-deps installs it)")
    home = tempfile.mkdtemp(prefix="troupe-shell-home-")
    sock = os.path.join(home, "tmux.sock")
    session = "troupe-shell-test"
    env = dict(os.environ, HOME=home, TERM="xterm")

    def tmux(*args):
        return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, text=True,
                              timeout=10, env=env, check=True).stdout

    def screen_until(pattern, timeout=20, last=False):
        """Until the screen (or, with `last`, its last line) matches."""
        deadline = time.monotonic() + timeout
        while True:
            text = tmux("capture-pane", "-p", "-t", session, "-S", "-200")
            lines = [x for x in text.splitlines() if x.strip()]
            where = (lines[-1] if lines else "") if last else text
            if re.search(pattern, where, re.M):
                return text
            assert time.monotonic() < deadline, f"no {pattern!r} on the screen:\n{text}"
            with c.cond:
                c.cond.wait(0.1)

    cmd = f"{c.binary} shell --config {c.conf}; echo shell-exited-$?"
    # The pane stays after the shell exits, to read its exit code.
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmd, ";",
         "set-option", "-t", session, "remain-on-exit", "on")
    try:
        screen_until(r"`help` lists the commands")
        screen_until(r"^ws-test>\s*$", last=True)
        # Tab completes a command ...
        tmux("send-keys", "-t", session, "gro", "Tab")
        screen_until(r"^ws-test> groups\s*$", last=True)
        tmux("send-keys", "-t", session, "Enter")
        screen_until(r"^websocket-broadcaster\s+up\s+3/3")
        # ... and a group name.
        tmux("send-keys", "-t", session, "crashes fraud-d", "Tab")
        screen_until(r"^ws-test> crashes fraud-detector\s*$", last=True)
        tmux("send-keys", "-t", session, "Enter")
        screen_until(r"^no crashes recorded$")
        # History: Up twice brings back `groups`.
        tmux("send-keys", "-t", session, "Up", "Up")
        screen_until(r"^ws-test> groups\s*$", last=True)
        tmux("send-keys", "-t", session, "C-u", "frobnicate", "Enter")
        screen_until(r"^unknown command 'frobnicate'")
        tmux("send-keys", "-t", session, "C-d")
        screen_until(r"^shell-exited-2$")
        with open(os.path.join(home, ".troupe_history")) as f:
            history = f.read().replace("\\040", " ")  # libedit's file encodes spaces
        assert "groups" in history and "crashes fraud-detector" in history, history
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, timeout=10,
                       env=env)
        shutil.rmtree(home, ignore_errors=True)


def prometheus_scrapes_every_node(c):
    for node in c.http:
        # Rendered once a second: wait for the groups' first figures.
        deadline = time.monotonic() + 20
        while 'troupe_group_events_in_total{node="%s",group="fraud-detector"}' % node \
                not in metrics(c, node):
            assert time.monotonic() < deadline, metrics(c, node)
            with c.cond:
                c.cond.wait(0.2)
        text = metrics(c, node)
        for family in ("troupe_group_events_in_total", "troupe_group_latency_seconds_bucket",
                       "troupe_cluster_member_up", "troupe_ws_connections",
                       "troupe_group_restarts_total", "process_resident_memory_bytes"):
            assert family in text, (node, family, text[:2000])
    prom = shutil.which("prometheus")
    if not prom:
        raise AssertionError("prometheus is not installed (scripts/install-deps installs it)")
    work = tempfile.mkdtemp(prefix="troupe-prometheus-")
    port = free_port()
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in c.http.values())
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: troupe
    static_configs:
      - targets: [{targets}]
""")
    log = open(os.path.join(work, "prometheus.log"), "w")
    p = subprocess.Popen([prom, f"--config.file={work}/prometheus.yml",
                          f"--storage.tsdb.path={work}/data",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(q):
            url = f"http://127.0.0.1:{port}/api/v1/query?query=" + urllib.request.quote(q)
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())["data"]["result"]

        deadline = time.monotonic() + 60
        while True:
            try:
                up = query("up")
                inst = query('troupe_group_instances{group="fraud-detector"}')
                if len(up) == 3 and all(r["value"][1] == "1" for r in up) and len(inst) == 3:
                    break
            except OSError:
                pass
            assert p.poll() is None, open(os.path.join(work, "prometheus.log")).read()
            assert time.monotonic() < deadline, "Prometheus did not scrape every node in time"
            with c.cond:
                c.cond.wait(0.5)
        assert sorted(r["metric"]["node"] for r in inst) == ["n1", "n2", "n3"], inst
        assert sum(float(r["value"][1]) for r in inst) == 3, inst
        members = query("troupe_cluster_member_up")
        assert len(members) == 6 and all(r["value"][1] == "1" for r in members), members
        lat = query("troupe_group_latency_seconds_count")
        assert len(lat) == 3 + 2 + 3, lat  # one series per group per hosting node
        logs = query("troupe_log_messages_total")
        assert len(logs) == 3 * 5, logs  # per node, per level
        # The broadcasters' Kafka consumers: a lag series per partition held,
        # once the group's first rebalance assigned them (a few seconds).
        deadline = time.monotonic() + 30
        while True:
            lag = query('troupe_kafka_consumer_lag{consumer_group="troupe.websocket-broadcaster"}')
            if len({(r["metric"]["topic"], r["metric"]["partition"]) for r in lag}) >= 2:
                break
            assert time.monotonic() < deadline, lag
            with c.cond:
                c.cond.wait(0.5)
        assert {r["metric"]["topic"] for r in lag} == {"articles", "fraud-alerts"}, lag
        assert all(r["value"][1] == "0" for r in lag), lag
        print(f"Prometheus at 127.0.0.1:{port} scraped {len(up)} nodes")
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


async def personalised_feeds(c, node, users, timeout=30):
    """Asks `node`'s gateway for each user's feed until every answer comes
    from the ranker (not its fallback): requests keep flowing to wherever
    the ranker's instances run."""
    import asyncio
    import websockets
    async with c.connect(node, "operator") as ws:
        json.loads(await asyncio.wait_for(ws.recv(), 10))
        deadline = time.monotonic() + timeout
        n = 0
        for user in users:
            while True:
                n += 1
                await ws.send(json.dumps({"op": "feed", "user": user, "k": 1, "id": n}))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m.get("id") == n:
                        break
                if m.get("type") == "feed" and m.get("source") == "ranker":
                    break
                assert time.monotonic() < deadline, (user, m)
                try:
                    await asyncio.wait_for(ws.recv(), 0.1)  # pace: a push, or 100 ms
                except asyncio.TimeoutError:
                    pass


def drain_stop_and_shutdown(c):
    import asyncio
    sh = Shell(c)
    sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    users = ["ana", "bob", "cho", "dan", "eve", "fay"]  # keys of both ranker instances
    asyncio.run(personalised_feeds(c, "n1", users))
    # n2 hosts ranker #1: drained, its requests go where #1 moves.
    rc, out, err = sh.run("-c", "drain n2", check_rc=0)
    assert "n2 drained: it hosts nothing" in out, (out, err)
    doc = sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    assert all(p["node"] != "n2" for p in group(doc, "ranker")["where"]), doc
    asyncio.run(personalised_feeds(c, "n1", users))
    sh.run("-c", "undrain n2", check_rc=0)
    sh.until("groups", lambda d: any(p["node"] == "n2" for p in group(d, "ranker")["where"]))
    # A client of n3's gateway: once n3 hosts no broadcaster worker (3 s of
    # grace), the gateway closes it with 1012 (service restart), and n3's
    # /healthz stops offering WebSockets.
    code, out = asyncio.run(client_closed_by(c, "n3", "drain n3"))
    assert "n3 drained: it hosts nothing" in out, out
    assert code == 1012, code
    assert c.health("n3")["websocket"] is False, c.health("n3")
    doc = sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    for g in doc["groups"]:
        assert all(p["node"] != "n3" for p in g["where"]), g
        assert g["instances"] == g["declared"], g
    fd = group(doc, "fraud-detector")
    assert sorted(i for p in fd["where"] for i in p["instances"]) == [0, 1, 2], fd
    nodes = sh.json("nodes")
    n3 = next(n for n in nodes["nodes"] if n["name"] == "n3")
    assert n3["state"] == "up" and n3["groups"] == [], n3
    # undrain: n3 hosts again.
    sh.run("-c", "undrain n3", check_rc=0)
    sh.until("groups", lambda d: all(any(p["node"] == "n3" for p in group(d, g)["where"])
                                     for g in ("fraud-detector", "websocket-broadcaster")))
    c.wait_healthy("n3", 20, websocket=True)
    # stop: drained, then the process exits 0 and `troupe up` leaves it down.
    mark = c.mark()
    rc, out, err = sh.run("-c", "stop n2", check_rc=0, timeout=90)
    assert "n2 drained" in out and "n2 stopped" in out, (out, err)
    c.wait_for(r"\[n2\] stopping: asked by shell/", 10, mark)
    deadline = time.monotonic() + 20
    while True:
        try:
            os.kill(c.pids["n2"], 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "n2's process did not exit"
        with c.cond:
            c.cond.wait(0.1)
    try:
        c.wait_for(r"^\[up\] n2 started", 3, mark)
        raise AssertionError("troupe up restarted a node an operator stopped")
    except AssertionError as e:
        if "restarted a node" in str(e):
            raise
    doc = sh.until("groups", lambda d: group(d, "fraud-detector")["state"] == "up"
                   and group(d, "fraud-detector")["instances"] == 3)
    assert all(p["node"] != "n2" for p in group(doc, "fraud-detector")["where"]), doc
    # No actor met a message it did not know (it would have ended).
    bad = [ln for ln in c.lines if "unexpected message" in ln or "actor ended" in ln]
    assert not bad, bad
    # shutdown: the others stop too, and `troupe up` ends by itself.
    rc, out, err = sh.run("-c", "shutdown", timeout=90)
    assert rc == 0 and "n3 stopped" in out and "n1 stopped" in out, (rc, out, err)
    c.wait_for(r"^\[up\] every node was stopped on purpose", 20, mark)
    assert c.proc.wait(30) == 0


async def client_closed_by(c, node, command):
    """Connects a client to `node`'s gateway, runs `troupe shell -c command`,
    and waits (bounded) until the gateway closes the client; returns the
    close code and the shell's output."""
    import asyncio
    import websockets
    async with c.connect(node, "operator") as ws:
        json.loads(await asyncio.wait_for(ws.recv(), 10))
        proc = await asyncio.create_subprocess_exec(
            c.binary, "shell", "--config", c.conf, "-c", command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out, err)
        try:
            for _ in range(10000):
                await asyncio.wait_for(ws.recv(), 15)  # pushes may come first
            raise AssertionError("the gateway kept the client")
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, out.decode() + err.decode()


async def feeds_while(c, node, users, command):
    """Asks `node`'s gateway for feeds, one at a time, while `troupe shell -c
    command` runs; returns (the shell's exit code and output, the answers)."""
    import asyncio
    import websockets
    answers = []
    async with c.connect(node, "operator") as ws:
        json.loads(await asyncio.wait_for(ws.recv(), 10))
        proc = await asyncio.create_subprocess_exec(
            c.binary, "shell", "--config", c.conf, "-c", command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        done = asyncio.ensure_future(proc.communicate())
        n = 0
        while not done.done() or n < 20:
            n += 1
            await ws.send(json.dumps({"op": "feed", "user": users[n % len(users)], "k": 1,
                                      "id": n}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m.get("id") == n:
                    answers.append(m)
                    break
            assert n < 100000
        out, err = await asyncio.wait_for(done, 60)
        return proc.returncode, out.decode() + err.decode(), answers


def scale_keeps_traffic_flowing(c):
    import asyncio
    sh = Shell(c)
    sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    users = ["ana", "bob", "cho", "dan", "eve", "fay"]
    asyncio.run(personalised_feeds(c, "n1", users))
    for n in (3, 1, 2):
        rc, out, answers = asyncio.run(feeds_while(c, "n1", users, f"scale ranker {n}"))
        assert rc == 0 and f"ranker: {n} instances running" in out, (rc, out)
        # Every feed asked meanwhile was answered, by the ranker or, while
        # a node's ranker restarted with its new instances, by its fallback.
        bad = [a for a in answers if a.get("type") != "feed"]
        assert not bad, bad[:5]
        ranked = sum(1 for a in answers if a["source"] == "ranker")
        print(f"scale ranker {n}: {len(answers)} feeds answered meanwhile, {ranked} by the ranker")
        doc = sh.until("groups", lambda d: group(d, "ranker")["state"] == "up")
        r = group(doc, "ranker")
        assert r["instances"] == n and r["declared"] == n, r
        assert sorted(i for p in r["where"] for i in p["instances"]) == list(range(n)), r
        asyncio.run(personalised_feeds(c, "n1", users))
    # fraud-detector up to 5: the new instances go where the plan puts them.
    rc, out, err = sh.run("-c", "scale fraud-detector 5", check_rc=0)
    doc = sh.until("groups", lambda d: group(d, "fraud-detector")["state"] == "up")
    fd = group(doc, "fraud-detector")
    assert sorted(i for p in fd["where"] for i in p["instances"]) == [0, 1, 2, 3, 4], fd
    rc, out, err = sh.run("-c", "kill fraud-detector/4", check_rc=0)
    rc, out, err = sh.run("-c", "scale fraud-detector 0", check_rc=2)
    assert "1 to 1024" in err, err
    rc, out, err = sh.run("-c", "scale nosuch 2", check_rc=2)
    bad = [ln for ln in c.lines if "unexpected message" in ln or "actor ended" in ln]
    assert not bad, bad


def a_restarted_node_learns_drain_and_scale(c):
    """Drain and scale are cluster state: a node killed and started again
    learns both from its peers (the newer decision wins) instead of running
    what the topology file says."""
    sh = Shell(c)
    sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    sh.run("-c", "scale ranker 3", check_rc=0)
    rc, out, err = sh.run("-c", "drain n3", check_rc=0)
    assert "n3 drained: it hosts nothing" in out, (out, err)
    mark = c.mark()
    os.kill(c.pids["n3"], signal.SIGKILL)
    m = c.wait_for(r"^\[up\] n3 started, pid (\d+)$", 30, mark)
    c.pids["n3"] = int(m.group(1))
    c.wait_for(r"\[n3\] draining n3 \(learned from n[12]\)", 30, mark)
    c.wait_for(r"\[n3\] scaling ranker: 2 -> 3 instances \(learned from n[12]\)", 30, mark)

    def settled(d):
        r = group(d, "ranker")
        return all(g["state"] == "up" for g in d["groups"]) and r["instances"] == 3 \
            and all(p["node"] != "n3" for g in d["groups"] for p in g["where"])
    def n3_of(d):
        return next(n for n in d["nodes"] if n["name"] == "n3")
    # Every node's view (the shell asks the first reachable) has n3 up again.
    sh.until("nodes", lambda d: n3_of(d)["state"] == "up")
    doc = sh.until("groups", settled)
    assert group(doc, "ranker")["declared"] == 3, doc
    n3 = n3_of(sh.json("nodes"))
    assert n3["state"] == "up" and n3["groups"] == [], n3
    # An undrain reaches it like any node: it hosts again.
    sh.run("-c", "undrain n3", check_rc=0)
    sh.until("groups", lambda d: any(p["node"] == "n3" for p in group(d, "fraud-detector")["where"]))
    bad = [ln for ln in c.lines if "unexpected message" in ln or "actor ended" in ln]
    assert not bad, bad


def node_line(c, pattern, timeout=20, start=0):
    """The first JSON log line of a node from `start` on matching `pattern`,
    parsed."""
    m = c.wait_for(pattern, timeout, start)
    return json.loads(m.string)


def metric_values(text, name, **labels):
    """The values of `name`'s samples whose labels include `labels`."""
    values = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        ls = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[:line.rindex("}")]))
        if all(ls.get(k) == v for k, v in labels.items()):
            values.append(float(line.rsplit(" ", 1)[1]))
    return values


def structured_logs_and_levels(c):
    """Run with `troupe up --log-format json`: node lines are JSON objects
    with node, group and event id; `log` reads and sets levels while the
    nodes run; /metrics counts log lines, Kafka lag and Redis round trips."""
    sh = Shell(c)
    sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    with c.cond:
        node_lines = [l for l in c.lines if not l.startswith("[up]") and not l.startswith("[redis]")]
    # The nodes' log lines are JSON; anything else a node printed is its raw
    # standard error (a library's own complaint), which `troupe up` prefixes.
    raw = [l for l in node_lines if not l.startswith("{")]
    assert all(re.match(r"^\[n\d\] ", l) for l in raw), raw
    node_lines = [l for l in node_lines if l.startswith("{")]
    assert len(node_lines) > 20, node_lines
    for line in node_lines:
        doc = json.loads(line)
        assert set(doc) <= {"ts", "level", "node", "group", "event", "msg"}, doc
        assert {"ts", "level", "node", "msg"} <= set(doc), doc
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", doc["ts"]), doc
        assert doc["node"] in ("n1", "n2", "n3") and doc["level"] in ("info", "warning"), doc
    hosting = [json.loads(l) for l in node_lines if '"msg":"hosting fraud-detector:' in l]
    assert hosting and all(d["group"] == "fraud-detector" for d in hosting), hosting

    assert sh.json("log")["nodes"] == {"n1": "info", "n2": "info", "n3": "info"}
    mark = c.mark()
    doc = sh.json("log debug")
    assert doc["nodes"] == {n: {"before": "info", "level": "debug"} for n in ("n1", "n2", "n3")}
    for n in ("n1", "n2", "n3"):
        d = node_line(c, rf'"node":"{n}".*"msg":"log level info -> debug: asked by shell/', 10,
                      mark)
        assert d["level"] == "warning", d

    # At debug, a relayed article's line carries its id as the event.
    mark = c.mark()
    art = {"schema": 1, "id": "art-log-1", "headline": "Logged", "category": "science",
           "bias": 0.5, "published_at": int(time.time() * 1000), "breaking": False}
    sh.run("-c", f"publish articles {json.dumps(art)}", check_rc=0)
    d = node_line(c, r'"group":"websocket-broadcaster","event":"art-log-1"', 20, mark)
    assert d["level"] == "debug" and "to the news hub" in d["msg"], d

    # A bad article is a warning with its id and reason, at any level.
    bad = {"schema": 1, "id": "bad-art-1", "headline": "", "category": "Not A Category"}
    sh.run("-c", f"publish articles {json.dumps(bad)}", check_rc=0)
    d = node_line(c, r'"event":"bad-art-1"', 20, mark)
    assert d["level"] == "warning" and d["group"] == "websocket-broadcaster", d
    assert "dead letter (invalid article" in d["msg"], d

    # A crash is reported by its supervisor, with the group and the reason.
    sh.run("-c", "kill fraud-detector/0", check_rc=0)
    d = node_line(c, r'"group":"fraud-detector".*exited \(killed_by_operator', 20, mark)
    assert d["level"] == "warning" and d["msg"].endswith("restarted"), d

    # One node back to info; a bad level is refused with the choices.
    assert sh.json("log info n1")["nodes"] == {"n1": {"before": "debug", "level": "info"}}
    assert sh.json("log")["nodes"] == {"n1": "info", "n2": "debug", "n3": "debug"}
    rc, out, err = sh.run("-c", "log loud", check_rc=2)
    assert "expected error, warning, info, debug or trace" in out + err, (out, err)
    rc, out, err = sh.run("-c", "log debug n9", check_rc=2)

    # /metrics: lines per level, the broadcaster's Kafka lag (0 once it
    # committed what it read), the records it read, Redis round trips.
    deadline = time.monotonic() + 20
    while True:
        texts = {n: metrics(c, n) for n in c.http}
        warnings = [sum(metric_values(t, "troupe_log_messages_total", level="warning"))
                    for t in texts.values()]
        lags = [v for t in texts.values()
                for v in metric_values(t, "troupe_kafka_consumer_lag",
                                       consumer_group="troupe.websocket-broadcaster",
                                       topic="articles")]
        read = sum(v for t in texts.values()
                   for v in metric_values(t, "troupe_kafka_consumer_records_total",
                                          consumer_group="troupe.websocket-broadcaster",
                                          topic="articles"))
        if all(w >= 1 for w in warnings) and lags and all(v == 0 for v in lags) and read >= 2:
            break
        assert time.monotonic() < deadline, (warnings, lags, read)
        with c.cond:
            c.cond.wait(0.2)
    import asyncio
    asyncio.run(personalised_feeds(c, "n1", ["u-log"]))
    deadline = time.monotonic() + 10
    while sum(v for n in c.http for v in metric_values(metrics(c, n), "troupe_redis_commands_total",
                                                       client="ranker")) < 1:
        assert time.monotonic() < deadline, "no Redis round trip of the ranker counted"
        with c.cond:
            c.cond.wait(0.2)


def every_command_is_audited(c):
    """Each operator command is an audit line in the nodes' log and a record
    on the `audit` topic, saying who, from where, what and the result; the
    node records the commands it executes itself, the shell reports every
    command line."""
    from kafka import KafkaConsumer, TopicPartition
    sh = Shell(c)
    sh.until("groups", lambda d: all(g["state"] == "up" for g in d["groups"]))
    mark = c.mark()
    sh.run("-c", "drain n3", check_rc=0, timeout=60)
    sh.run("-c", "undrain n3", check_rc=0, timeout=60)
    rc, _, _ = sh.run("-c", "scale nosuchgroup 2")
    assert rc != 0
    sh.run("-c", "token revoke mallory", check_rc=0)
    line = c.wait_for(r"audit who=shell/\S+ from=\S+ source=node command=\"drain n3\" result=ok",
                      start=mark)
    print("audit line:", line.group(0))
    c.wait_for(r"source=shell command=\"scale nosuchgroup 2\" result=failed: ", start=mark)
    # The records: read the topic from its start until every command is there.
    consumer = KafkaConsumer(bootstrap_servers=c.kafka, enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    tp = TopicPartition("audit", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    want = {("node", "drain n3", True), ("node", "undrain n3", True),
            ("shell", "drain n3", True), ("shell", "undrain n3", True),
            ("shell", "scale nosuchgroup 2", False), ("node", "token revoke mallory", True),
            ("shell", "token revoke mallory", True)}
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for r in consumer:
            seen.append(json.loads(r.value))
        if want <= {(x["source"], x["command"], x["ok"]) for x in seen}:
            break
    got = {(x["source"], x["command"], x["ok"]) for x in seen}
    assert want <= got, (want - got, seen)
    for x in seen:
        assert x["who"].startswith("shell/") and x["from"] and x["node"] in ("n1", "n2", "n3"), x
        assert x["at"] > 0, x
    failed = [x for x in seen if x["command"] == "scale nosuchgroup 2"]
    assert "no group" in failed[0]["result"], failed
    print(f"{len(seen)} audit records, e.g. {seen[0]}")


CASES = {
    "audit": every_command_is_audited,
    "one_shot": one_shot_commands,
    "kill": kill_shows_restart_and_reason,
    "stdin": commands_from_standard_input,
    "lost": a_lost_node_is_reported_and_retried,
    "tmux": interactive_session_in_tmux,
    "prometheus": prometheus_scrapes_every_node,
    "drain": drain_stop_and_shutdown,
    "scale": scale_keeps_traffic_flowing,
    "logs": structured_logs_and_levels,
    "learns": a_restarted_node_learns_drain_and_scale,
}

#: Cases whose cluster runs with extra `troupe up` arguments.
UP_ARGS = {"logs": ["--log-format", "json"]}


def main():
    binary, case = sys.argv[1], sys.argv[2]
    with Cluster(binary, GROUPS, up_args=UP_ARGS.get(case, [])) as c:
        CASES[case](c)
    print(f"{case}: ok")


if __name__ == "__main__":
    main()
