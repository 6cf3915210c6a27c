#!/usr/bin/python3
"""A cluster node as one supervision tree, on a real three-node cluster
(`troupe up`, embedded Kafka, redis-server) running the fraud pipeline and
the news groups, with a real WebSocket client (python3-websockets) and a
real Kafka producer (python3-kafka).

  node_tree_test.py TROUPE_BINARY CASE

Cases:
  tree      every actor a node runs sits in its tree, under a supervisor with
            a declared restart type (the tree, walked with the shell's `tree`,
            against the node's own count of running actors)
  restarts  each of a node's own actors, killed in turn with the shell's
            `kill NODE:PART`, is restarted by its supervisor and shows in
            `crashes` and /metrics, while a WebSocket client keeps getting
            breaking news and the pipeline keeps raising alerts

Every wait is bounded; every process is stopped by PID.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "support"))
from troupe_cluster import Cluster, pipeline_groups  # noqa: E402
from kafka_producer import Producer  # noqa: E402


# Threshold 0: every transaction raises an alert, so each one shows that the
# whole pipeline (ingestor to alerter, then the broadcaster's push) works.
GROUPS = pipeline_groups(alerter="threshold = 0.0", broadcaster="rate_limit = 1000", extra="""
[[group]]
name = "ranker"
domain = "ranker"
instances = 2
routing = "key_hash"
key = "user"
fallback = "trending"
""")

NODE_PARTS = ["agent", "placement", "router/ingestor", "router/alerter", "router/ranker",
              "collector", "traces", "news-hub", "gateway-helper", "client-tokens", "console",
              "http"]
RESTART_TYPES = {"permanent", "transient", "temporary"}


def shell(c, command, timeout=30, check=True):
    """`troupe shell --json -c COMMAND`'s answer; with check=False, None
    when it failed (a node part restarting does not answer for a moment)."""
    p = subprocess.run([c.binary, "shell", "--config", c.conf, "--json", "-c", command],
                       capture_output=True, text=True, timeout=timeout)
    if not check and p.returncode != 0:
        return None
    assert p.returncode == 0, (command, p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


def bounded(c, pred, what, timeout=30):
    """Asks `pred` again at each new line of the cluster's log (at least 5
    times a second) until it returns a true value."""
    deadline = time.monotonic() + timeout
    while True:
        x = pred()
        if x:
            return x
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        with c.cond:
            c.cond.wait(0.2)


def walk(node, depth=0):
    """Every actor of a `tree` document, with its depth (the root's is 0)."""
    yield depth, node
    for k in node.get("children", []):
        yield from walk(k, depth + 1)


def parts_of(tree_doc, node):
    """The node's own actors (children of its root, and of the root's
    supervisors): name -> (state, restarts)."""
    result = {}
    for depth, x in walk(tree_doc[node]):
        if 1 <= depth <= 2 and "restarts" in x:
            result[x["name"]] = (x["state"], x["restarts"])
    return result


def transaction(txid, user):
    return {"schema": 1, "id": txid, "user": user, "amount": 42.0, "currency": "EUR",
            "merchant": "m-1", "category": "electronics", "country": "DE", "device": "d-1",
            "timestamp": int(time.time() * 1000)}


def article(aid):
    return {"schema": 1, "id": aid, "headline": f"Headline {aid}", "category": "tree",
            "bias": 0.5, "published_at": int(time.time() * 1000), "breaking": True}


# -- cases ----------------------------------------------------------------------------


def tree_problem(root, node, running):
    """What is wrong with one node's tree, or None: its shape, each child's
    restart type and state, and its actors against the node's own count."""
    if root["name"] != f"{node}.root":
        return f"root is {root['name']}"
    top = [k["name"] for k in root["children"]]
    if top != ["agent", f"{node}.groups", "placement", f"{node}.routers", f"{node}.services"]:
        return f"root's children: {top}"
    kids = {k["name"]: k for k in root["children"]}
    routers = [k["name"] for k in kids[f"{node}.routers"]["children"]]
    want = [f"router/{g}" for g in ("ingestor", "feature-enricher", "fraud-detector", "alerter",
                                    "ranker", "websocket-broadcaster")]
    if routers != want:
        return f"routers: {routers}"
    services = [k["name"] for k in kids[f"{node}.services"]["children"]]
    if services != ["collector", "traces", "news-hub", "gateway-helper", "client-tokens",
                    "console", "http"]:
        return f"services: {services}"
    actors = 1  # the root supervisor itself
    broadcasters = 0
    for depth, x in walk(root):
        if x is root:
            continue
        actors += 1
        if "restart" in x:
            if x["restart"] not in RESTART_TYPES:
                return f"{x['name']}: restart type {x['restart']}"
            if x["state"] != "running":
                return f"{x['name']}: {x['state']}"
        if x["name"].startswith("websocket-broadcaster/"):
            broadcasters += 1
    # Beside its tree, a node runs one Kafka reader per broadcaster worker,
    # linked to that worker (it ends with it and is restarted with it), and
    # the main thread's actor that waits for the root to end. Anything else
    # would be an actor nobody supervises.
    if running != actors + broadcasters + 1:
        return f"{running} actors run, {actors} in the tree, {broadcasters} linked readers"
    print(f"{node}: {actors} actors in the tree, {broadcasters} linked readers, "
          f"{running} running")
    return None


def every_actor_has_a_supervisor(c):
    def settled():
        groups = shell(c, "groups")["groups"]
        return all(g["state"] == "up" for g in groups)
    bounded(c, settled, "every group up", 60)
    # The tree and the count are two requests: a part restarting between them
    # (a group restarted as its instances settle) differs for a moment. An
    # actor nobody supervises would differ for ever.
    problems = {}

    def consistent():
        before = shell(c, "tree")
        running = {n["name"]: n["running_actors"] for n in shell(c, "nodes")["nodes"]}
        after = shell(c, "tree")
        if before != after:
            problems["any"] = "the tree changed while it was read"
            return False
        problems.clear()
        for node in ("n1", "n2", "n3"):
            p = tree_problem(after[node], node, running[node])
            if p:
                problems[node] = p
        if problems:
            print(f"not yet consistent: {problems}")
        return not problems
    try:
        bounded(c, consistent, "every node's tree consistent", 30)
    except AssertionError:
        raise AssertionError(f"trees: {problems}")


async def node_parts_restart_while_serving(c):
    kafka = Producer(bootstrap_servers=c.kafka, linger_ms=0)
    async def connect():
        ws = await c.connect("n1", "operator")
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer.get("ok"), answer
        for i, channel in enumerate(("alerts", "breaking:tree")):
            await ws.send(json.dumps({"op": "subscribe", "channel": channel, "id": i}))
        return ws

    async def expect(ws, kinds, timeout=45):
        """Publishes a breaking article and a transaction every second until
        the client got both back (the article pushed, the transaction's
        alert); returns the client. A node part whose restart restarts the
        HTTP server too (the agent, placement, the server itself) closes the
        connection: the client connects again, as any client does."""
        got = set()
        deadline = time.monotonic() + timeout
        n = 0
        while got != kinds:
            assert time.monotonic() < deadline, f"only {got} of {kinds} within {timeout} s"
            n += 1
            tag = f"{time.monotonic_ns()}-{n}"
            kafka.send("articles", json.dumps(article("a-" + tag)).encode(),
                       key=("a-" + tag).encode())
            kafka.send("transactions", json.dumps(transaction("tx-" + tag, "u-" + tag)).encode(),
                       key=("u-" + tag).encode())
            kafka.flush(30)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and got != kinds:
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 0.1))
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    ws = await bounded_connect()
                    continue
                if m.get("type") == "breaking" and m["article"]["category"] == "tree":
                    got.add("breaking")
                if m.get("type") == "alert":
                    got.add("alert")
        return ws

    async def bounded_connect(timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await connect()
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                assert time.monotonic() < deadline, "could not connect again"
                await asyncio.sleep(0.2)

    ws = await connect()
    ws = await expect(ws, {"breaking", "alert"}, 90)
    for part in NODE_PARTS:
        t0 = time.monotonic()
        # The part runs (the previous one's restart may still be restarting
        # its later siblings: a supervisor busy starting them answers the
        # shell late, and the shell then says so rather than answer).
        def running():
            doc = shell(c, "tree n1", check=False)
            now = doc and parts_of(doc, "n1").get(part)
            return now if now and now[0] == "running" else None
        before = bounded(c, running, f"{part} running")
        out = bounded(c, lambda: shell(c, f"kill n1:{part}", check=False), f"kill n1:{part}")
        assert out["killed"] == [{"node": "n1", "child": part}], out
        # Its supervisor starts it again: one more restart, running.
        def restarted():
            now = running()
            return now and now[1] >= before[1] + 1
        bounded(c, restarted, f"{part} restarted")
        # The crash is in the history (a complete answer: every supervisor
        # answered).
        def crash_recorded():
            doc = shell(c, "crashes", check=False)
            return doc and any(x["node"] == "n1" and x["child"] == part
                               and x["reason"].startswith("killed_by_operator")
                               for x in doc["crashes"])
        bounded(c, crash_recorded, f"the crash of n1:{part} in `crashes`")
        ws = await expect(ws, {"breaking", "alert"})
        print(f"n1:{part} restarted; breaking news and alerts still flow "
              f"({time.monotonic() - t0:.1f} s)")
    crash_line = 'troupe_node_recent_crashes{node="n1",supervisor="n1.services",' \
        'child="http",reason="killed_by_operator"} 1'
    metrics = bounded(c, lambda: (lambda t: crash_line in t and t)(
        urllib.request.urlopen(f"http://127.0.0.1:{c.http['n1']}/metrics", timeout=5)
        .read().decode()), "the http crash in /metrics")
    assert 'troupe_node_restarts_total{node="n1",supervisor="n1.services",child="http"} 1' \
        in metrics, metrics
    kafka.close()


CASES = {
    "tree": every_actor_has_a_supervisor,
    "restarts": lambda c: asyncio.run(asyncio.wait_for(node_parts_restart_while_serving(c), 200)),
}


def main():
    binary, case = sys.argv[1], sys.argv[2]
    with Cluster(binary, GROUPS) as c:
        CASES[case](c)
    print(f"{case}: ok")


if __name__ == "__main__":
    main()
