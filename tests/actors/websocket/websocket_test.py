#!/usr/bin/python3
"""The WebSocket gateway, the ranker and the news flow on a real three-node
cluster (`troupe up`, embedded Kafka, redis-server), with real clients:
python3-websockets for WebSocket, python3-kafka for Kafka.

  websocket_test.py TROUPE_BINARY CASE

Each case starts its own cluster, asserts, and stops it; every wait is
bounded.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import websockets
from kafka import KafkaConsumer, TopicPartition

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "support"))
from troupe_cluster import Cluster  # noqa: E402
from kafka_producer import Producer  # noqa: E402

GROUPS = """
[[group]]
name = "ranker"
domain = "ranker"
instances = 1
nodes = ["{ranker_node}"]
routing = "key_hash"
key = "user"
fallback = "trending"
restart_delay = "1s"
settings = {{ variants = "{variants}" }}

[[group]]
name = "websocket-broadcaster"
domain = "websocket-broadcaster"
instances = 3
settings = {{ send_queue = {send_queue}, rate_limit = {rate_limit}, max_message = 4096, unauthenticated_idle_timeout = "{idle}" }}
"""

HOUR = 3600 * 1000


def groups(ranker_node="n1", send_queue=1024, rate_limit=20, idle="5m",
           variants="control:100:0.40/0.30/0.30"):
    return GROUPS.format(ranker_node=ranker_node, send_queue=send_queue, rate_limit=rate_limit,
                         idle=idle, variants=variants)


def now_ms():
    return int(time.time() * 1000)


def article(aid, category="politics", bias=0.5, age_ms=0, breaking=False, headline=None):
    return {"schema": 1, "id": aid, "headline": headline or f"Headline {aid}",
            "category": category, "bias": bias, "published_at": now_ms() - age_ms,
            "breaking": breaking}


class Kafka:
    def __init__(self, bootstrap):
        self.producer = Producer(bootstrap_servers=bootstrap, linger_ms=0)
        self.bootstrap = bootstrap

    def send(self, topic, value, key=None):
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.producer.send(topic, data, key=key.encode() if key else None)

    def flush(self):
        self.producer.flush(30)

    def read_all(self, topic, want, timeout=30):
        """Records of `topic` from the start until `want(records)` holds."""
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                          consumer_timeout_ms=500)
        parts = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=200).values():
                records.extend(r.value for r in batch)
            if want(records):
                break
        c.close()
        return records


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, msg, timeout=10):
    """Sends `msg` and returns the answer with the same id (pushes skipped)."""
    await ws.send(json.dumps(msg))
    deadline = time.monotonic() + timeout
    while True:
        m = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if m.get("id") == msg.get("id") or ("id" not in msg and m["type"] != "breaking"):
            return m


async def pace(ws, seconds=0.05):
    """Between the rounds of a polling loop: waits up to `seconds` for a push
    (and drops it). A loop that asked again at once would meet the rate limit
    and starve a loaded machine."""
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        pass


async def until(ws, pred, timeout=20):
    """The first message for which `pred` holds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message in time")
        m = await recv_json(ws, left)
        if pred(m):
            return m


async def ready(kafka, clients, timeout=60):
    """Publishes breaking probes until every client got one: the brokers,
    consumer groups and hubs are all in place."""
    got = [False] * len(clients)
    deadline = time.monotonic() + timeout
    n = 0
    while not all(got):
        assert time.monotonic() < deadline, "the cluster did not deliver probes in time"
        n += 1
        kafka.send("articles", article(f"probe-{n}", "probe", breaking=True, age_ms=47 * HOUR))
        kafka.flush()
        end = time.monotonic() + 1.0
        while time.monotonic() < end and not all(got):
            for i, ws in enumerate(clients):
                try:
                    m = await recv_json(ws, 0.05)
                    if m["type"] == "breaking" and m["article"]["category"] == "probe":
                        got[i] = True
                except asyncio.TimeoutError:
                    pass


# -- cases ---------------------------------------------------------------------------


async def breaking_news_reaches_every_node(c):
    kafka = Kafka(c.kafka)
    clients = {}
    for node, channel in (("n1", "breaking:*"), ("n2", "breaking:politics"),
                          ("n3", "breaking:politics")):
        ws = await websockets.connect(c.url(node))
        await request(ws, {"op": "subscribe", "channel": channel, "id": 1})
        await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 2})
        clients[node] = ws
    sports = await websockets.connect(c.url("n2"))
    await request(sports, {"op": "subscribe", "channel": "breaking:sports", "id": 1})
    await ready(kafka, list(clients.values()))
    # A breaking article is read by one node's consumer, and pushed by all.
    kafka.send("articles", article("storm", "politics", breaking=True))
    kafka.send("articles", article("quiet", "politics", breaking=False))
    kafka.send("articles", b"{not json", key="bad-1")
    kafka.send("articles", {**article("bad-2"), "bias": 3})
    kafka.flush()
    for node, ws in clients.items():
        m = await until(ws, lambda m: m["type"] == "breaking" and m["article"]["id"] == "storm")
        assert m["article"]["headline"] == "Headline storm", m
        print(f"{node}: got breaking 'storm'")
    # The consumer was on one node only: the others got it through CAF.
    consumed = [n for n in ("n1", "n2", "n3")
                if any(ln.startswith(f"[{n}] websocket-broadcaster/") and "partitions assigned: "
                       in ln and not ln.endswith(": 0") for ln in c.lines)]
    print("nodes with assigned partitions:", consumed)
    # Not breaking: never pushed; other category: never pushed to sports.
    for ws in list(clients.values()) + [sports]:
        await ws.send(json.dumps({"op": "ping", "id": "last"}))
        while True:
            m = await recv_json(ws)
            assert m.get("article", {}).get("id") != "quiet", m
            assert ws is not sports or m["type"] != "breaking", m
            if m.get("id") == "last":
                break
    # The bad articles went to the dead letters with their reasons.
    dead = kafka.read_all("dead-letters", lambda rs: len(rs) >= 2)
    reasons = sorted(json.loads(r)["reason"] for r in dead)
    print("dead letters:", reasons)
    assert any("not valid JSON" in r for r in reasons), reasons
    assert any("'bias' must be from 0 to 1" in r for r in reasons), reasons


async def feed_equals_the_formula(c):
    kafka = Kafka(c.kafka)
    c.redis_cli("HSET", "prefs:ana", "bias", "0.2", "category:politics", "0.9",
                "category:sports", "0.3", "other", "0.1")
    ws = await c.connect("n2", "ana")
    assert (await recv_json(ws))["type"] == "auth"
    await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 0})
    await ready(kafka, [ws])
    fixed = [article("p1", "politics", 0.1, 1 * HOUR), article("p2", "politics", 0.9, 2 * HOUR),
             article("s1", "sports", 0.2, 0), article("w1", "weather", 0.5, 5 * HOUR),
             article("s2", "sports", 0.6, 30 * HOUR), article("old", "politics", 0.2, 60 * HOUR)]
    for a in fixed:
        kafka.send("articles", a)
    kafka.flush()
    prefs = {"politics": 0.9, "sports": 0.3}
    want_ids = {"p1", "p2", "s1", "w1", "s2"}  # "old" is past max_age (48h)
    deadline = time.monotonic() + 20
    while True:
        before = now_ms()
        f = await request(ws, {"op": "feed", "k": 100, "id": "f"})
        after = now_ms()
        # (While the groups settle after the start a feed may be refused as
        # unavailable: ask again.)
        got = [i for i in f.get("items", []) if i["category"] != "probe"]
        if {i["id"] for i in got} == want_ids or time.monotonic() > deadline:
            break
        # Not all there yet: ask again after a pause. Asked at once, a feed
        # answered in under a millisecond spends the rate limit's burst, and
        # the next request (k=3, below) is refused as rate_limited.
        await pace(ws)
    assert f["type"] == "feed" and f["source"] == "ranker" and not f["degraded"], f
    assert not f["default_preferences"], f
    assert {i["id"] for i in got} == want_ids, got
    by_id = {a["id"]: a for a in fixed}
    for item in got:
        a = by_id[item["id"]]
        comp = item["components"]
        assert comp["affinity"] == prefs.get(a["category"], 0.1), item
        assert comp["bias_alignment"] == 1 - abs(a["bias"] - 0.2), item
        # Recency depends on the moment of ranking, between before and after.
        hi = 1 / (1 + 0.1 * max(0, before - a["published_at"]) / 3600000)
        lo = 1 / (1 + 0.1 * max(0, after - a["published_at"]) / 3600000)
        assert lo - 1e-12 <= comp["recency"] <= hi + 1e-12, (item, lo, hi)
        assert item["score"] == 0.40 * comp["affinity"] + 0.30 * comp["bias_alignment"] \
            + 0.30 * comp["recency"], item
    scores = [i["score"] for i in f["items"]]
    assert scores == sorted(scores, reverse=True), scores
    assert [i["id"] for i in got][:3] == ["p1", "s1", "p2"], [i["id"] for i in got]
    # k limits the answer; a user without preferences gets the defaults.
    f3 = await request(ws, {"op": "feed", "k": 3, "id": "k3"})
    assert len(f3["items"]) == 3, f3
    op = await c.connect("n3", "operator")
    await recv_json(op)
    g = await request(op, {"op": "feed", "user": "nobody", "k": 5, "id": "g"})
    assert g["default_preferences"] and g["user"] == "nobody", g
    for item in g["items"]:
        assert item["components"]["affinity"] == 0.5, item
    print("feed:", [(i["id"], round(i["score"], 4)) for i in got])


async def ranker_down_gives_trending_then_recovers(c):
    t0 = time.monotonic()
    kafka = Kafka(c.kafka)
    ws = await c.connect("n1", "ana")
    await recv_json(ws)
    await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 0})
    await ready(kafka, [ws])
    for i in range(5):
        kafka.send("articles", article(f"t{i}", "world", 0.5, i * HOUR))
    kafka.flush()
    # Reads make t3 the most read, then t1.
    for aid, n in (("t3", 3), ("t1", 2)):
        for _ in range(n):
            await request(ws, {"op": "read", "article": aid, "id": f"r-{aid}"})
    # Every node has the articles and the reads (relayed by the hubs).
    deadline = time.monotonic() + 20
    while True:
        t = await request(ws, {"op": "trending", "k": 2, "id": "t"})
        assert t["type"] == "trending", t
        top = [(i["id"], i["reads"]) for i in t["items"]]
        if top == [("t3", 3), ("t1", 2)]:
            break
        assert time.monotonic() < deadline, top
        await pace(ws)
    print(f"trending seen {time.monotonic() - t0:.1f}s after the start", flush=True)
    f = await request(ws, {"op": "feed", "k": 5, "id": "before"})
    assert f["source"] == "ranker" and not f["degraded"], f
    # Freeze the only node that may host the ranker: the group is lost.
    os.kill(c.pids["n3"], signal.SIGSTOP)
    stopped = time.monotonic()
    n = 0
    while True:
        n += 1
        f = await request(ws, {"op": "feed", "k": 3, "id": f"down-{n}"}, timeout=15)
        if f.get("degraded"):
            break
        assert time.monotonic() - stopped < 10, f
        await pace(ws, 0.01)
    took = time.monotonic() - stopped
    print(f"degraded answer {took * 1000:.0f} ms after the stop (failure timeout 500 ms)")
    assert f["source"] == "trending", f
    assert [i["id"] for i in f["items"]][:2] == ["t3", "t1"], f
    assert f["items"][0]["reads"] == 3, f
    assert took < 5.0, took
    os.kill(c.pids["n3"], signal.SIGCONT)
    resumed = time.monotonic()
    while True:
        n += 1
        f = await request(ws, {"op": "feed", "k": 3, "id": f"up-{n}"}, timeout=15)
        if f["type"] == "feed" and not f["degraded"]:
            break
        assert time.monotonic() - resumed < 30, f
        await pace(ws)
    print(f"personalised again {(time.monotonic() - resumed) * 1000:.0f} ms after the resume")
    assert f["source"] == "ranker" and "components" in f["items"][0], f


async def slow_client_is_dropped_without_delaying_others(c):
    kafka = Kafka(c.kafka)
    fast = await websockets.connect(c.url("n1"))
    await request(fast, {"op": "subscribe", "channel": "breaking:*", "id": 1})
    # The slow client stops reading: its library buffers one message, then
    # the socket fills, then its send queue on the server (256 here).
    slow = await websockets.connect(c.url("n1"), max_queue=1, read_limit=2 ** 12,
                                    write_limit=2 ** 12)
    await request(slow, {"op": "subscribe", "channel": "breaking:*", "id": 1})
    await ready(kafka, [fast])
    mark = c.mark()
    batches, size = 30, 100
    headline = "x" * 900
    took = []
    dropped_at = None
    for b in range(batches):
        t0 = time.monotonic()
        for i in range(size):
            kafka.send("articles", article(f"b{b}-{i}", "flood", breaking=True,
                                           headline=headline))
        kafka.flush()
        got = 0
        while got < size:
            m = await recv_json(fast, 20)
            if m["type"] == "breaking" and m["article"]["category"] == "flood":
                got += 1
        took.append(time.monotonic() - t0)
        if dropped_at is None and any("disconnected: too slow" in ln
                                      for ln in c.lines[mark:]):
            dropped_at = b
    print("fast client, ms per batch of 100:", [round(t * 1000) for t in took])
    c.wait_for(r"\[n1\] WebSocket client .* disconnected: too slow", 10, mark)
    assert dropped_at is not None and dropped_at < batches - 3, dropped_at
    # The fast client got everything, and no slower once the slow one was gone.
    before = sorted(took[1:dropped_at + 1])
    after = sorted(took[dropped_at + 1:])
    print(f"slow client dropped during batch {dropped_at}; median ms per batch before "
          f"{before[len(before) // 2] * 1000:.0f}, after {after[len(after) // 2] * 1000:.0f}")
    assert max(took[1:]) < 10, took  # the first batch also warms the Kafka consumers up
    # The slow client finds its connection gone once it reads again.
    n = 0
    try:
        while True:
            await asyncio.wait_for(slow.recv(), 10)
            n += 1
    except websockets.ConnectionClosed:
        pass
    print(f"slow client read {n} messages before the end")
    assert n < batches * size, n


async def bad_frames_get_documented_answers(c):
    url = c.url("n2")
    ws = await websockets.connect(url)
    m = await request(ws, {"op": "nope", "id": 1})
    assert m["type"] == "error" and m["error"] == "unknown_op" and m["id"] == 1, m
    await ws.send("{oops")
    m = await recv_json(ws)
    assert m["error"] == "invalid_json", m
    await ws.send("[1,2]")
    assert (await recv_json(ws))["error"] == "invalid_request"
    m = await request(ws, {"op": "subscribe", "channel": "gossip", "id": 2})
    assert m["error"] == "unknown_channel", m
    m = await request(ws, {"op": "subscribe", "channel": "alerts", "id": 3})
    assert m["error"] == "unauthorized", m
    m = await request(ws, {"op": "feed", "user": "ana", "id": 4})
    assert m["error"] == "unauthorized", m
    m = await request(ws, {"op": "auth", "user": "ana", "token": "00" * 32, "id": 5})
    assert m["error"] == "unauthorized", m
    m = await request(ws, {"op": "ping", "id": 6})
    assert m["type"] == "pong", m
    # A user's token reads that user's feed, never another's.
    ana = await c.connect("n2", "ana")
    assert (await recv_json(ana))["ok"]
    m = await request(ana, {"op": "feed", "user": "bob", "id": 7})
    assert m["error"] == "unauthorized", m
    # Binary frame: 1003.
    await ws.send(b"\x00\x01")
    await until_closed(ws, 1003)
    # Invalid UTF-8 in a text frame: 1007 (Beast checks it).
    ws = await websockets.connect(url)
    await ws.write_frame(True, websockets.frames.OP_TEXT, b'{"op":"ping","x":"\xff\xfe"}')
    await until_closed(ws, 1007)
    # Over max_message (4096 here): 1009.
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"op": "ping", "pad": "y" * 5000}))
    await until_closed(ws, 1009)
    # Rate limit (20/s, burst 40): refused with an error, the client stays.
    ws = await websockets.connect(url)
    for i in range(80):
        await ws.send(json.dumps({"op": "ping", "id": i}))
    answers = [await recv_json(ws) for _ in range(80)]
    limited = sum(1 for a in answers if a.get("error") == "rate_limited")
    assert {a["id"] for a in answers} == set(range(80)), answers  # each answer has its id
    print(f"rate limit: {limited} of 80 refused")
    assert 20 <= limited <= 45, limited
    # Past 100 refusals in a row: closed with 1008.
    try:
        for i in range(200):
            await ws.send(json.dumps({"op": "ping"}))
    except websockets.ConnectionClosed:
        pass  # the close came while we were still sending
    await until_closed(ws, 1008)
    # An upgrade elsewhere than /ws is refused; the node kept serving.
    try:
        await websockets.connect(f"ws://127.0.0.1:{c.http['n2']}/other")
        raise AssertionError("upgrade at /other accepted")
    except websockets.InvalidStatusCode as e:
        assert e.status_code == 404, e
    ws = await websockets.connect(url)
    assert (await request(ws, {"op": "ping", "id": "alive"}))["type"] == "pong"


async def until_closed(ws, code, timeout=10):
    """Reads until the server's close frame, which must carry `code`."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == code, (e.rcvd, e.sent)
        print(f"closed with {e.rcvd.code}: {e.rcvd.reason}")


def alert(txid, user, score=0.93):
    return {"schema": 1, "transaction": {"id": txid, "user": user, "amount": 990.0,
                                         "currency": "EUR", "merchant": "m-1",
                                         "category": "electronics", "country": "DE",
                                         "device": "d-9", "timestamp": now_ms()},
            "score": score, "model": "test", "threshold": 0.5, "top_features": [],
            "degraded": False, "raised_at": now_ms(), "node": "n1"}


async def alerts_reach_authorised_subscribers_only(c):
    kafka = Kafka(c.kafka)
    op = await c.connect("n1", "operator")
    ana = await c.connect("n2", "ana")
    bob = await c.connect("n3", "bob")
    for ws in (op, ana, bob):
        assert (await recv_json(ws))["ok"]
        assert (await request(ws, {"op": "subscribe", "channel": "alerts", "id": 1}))["type"] \
            == "subscribed"
        await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 2})
    await ready(kafka, [op, ana, bob])
    kafka.send("fraud-alerts", alert("tx-ana-1", "ana"), key="tx-ana-1")
    kafka.send("fraud-alerts", alert("tx-ana-1", "ana"), key="tx-ana-1")  # a redelivery
    kafka.send("fraud-alerts", alert("tx-carl-1", "carl"), key="tx-carl-1")
    kafka.flush()
    ids = lambda m: m["alert"]["transaction"]["id"] if m["type"] == "alert" else None  # noqa
    seen_op = [ids(await until(op, lambda m: m["type"] == "alert")) for _ in range(2)]
    assert sorted(seen_op) == ["tx-ana-1", "tx-carl-1"], seen_op
    m = await until(ana, lambda m: m["type"] == "alert")
    assert ids(m) == "tx-ana-1", m
    for ws, who in ((op, "operator"), (ana, "ana"), (bob, "bob")):
        await ws.send(json.dumps({"op": "ping", "id": "end"}))
        while True:
            m = await recv_json(ws)
            assert m["type"] != "alert", (who, m)  # no second copy, nothing for bob
            if m.get("id") == "end":
                break
    # Clients that connect later get the recent past of what they may see:
    # the operator every alert, ana hers, bob none, an anonymous client no
    # alerts at all.
    for who, want in (("operator", ["tx-ana-1", "tx-carl-1"]), ("ana", ["tx-ana-1"]),
                      ("bob", [])):
        async with c.connect("n2", who) as ws:
            assert (await recv_json(ws))["ok"]
            r = await request(ws, {"op": "recent", "channel": "alerts", "id": "r"})
            assert r["type"] == "recent", r
            got = sorted(ids(m) for m in r["items"])
            assert got == want, (who, r)
    async with c.connect("n2") as anon:
        r = await request(anon, {"op": "recent", "channel": "alerts", "id": "r"})
        assert r["type"] == "error" and r["error"] == "unauthorized", r
        r = await request(anon, {"op": "recent", "channel": "breaking:*", "k": 21, "id": "k"})
        assert r["type"] == "error" and r["error"] == "invalid_request", r


async def articles_survive_crashing_hubs(c):
    """The broadcasters commit an article's offset only once their node's
    hub took it: articles read on n2 and n3 while their hubs are killed are
    read again, and still reach a subscriber on n1."""
    kafka = Kafka(c.kafka)
    ws = await websockets.connect(c.url("n1"))
    await request(ws, {"op": "subscribe", "channel": "breaking:hubtest", "id": 1})
    await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 2})
    await ready(kafka, [ws])
    want = set()
    for i in range(60):
        aid = f"hub-{i}"
        want.add(aid)
        kafka.send("articles", article(aid, "hubtest", breaking=True), key=aid)
        if i % 20 == 10:
            kafka.flush()
            for node in ("n2", "n3"):
                subprocess.run([c.binary, "shell", "--config", c.conf, "-c",
                                f"kill {node}:news-hub"], check=True, capture_output=True,
                               timeout=30)
    kafka.flush()
    got = set()
    deadline = time.monotonic() + 60
    while got != want and time.monotonic() < deadline:
        try:
            m = await recv_json(ws, 1)
        except asyncio.TimeoutError:
            continue
        if m["type"] == "breaking" and m["article"]["category"] == "hubtest":
            assert m["article"]["id"] not in got, m  # each pushed once
            got.add(m["article"]["id"])
    assert got == want, sorted(want - got)


def b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(token, **changes):
    """`token` with its payload changed (or its header, `alg`) and its
    signature kept: what an attacker without the key can make."""
    import base64
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    alg = changes.pop("alg", None)
    body.update(changes)
    if alg is not None:
        head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        sig = "" if alg == "none" else sig
    return ".".join([head, b64url(json.dumps(body).encode()), sig])


async def auth(ws, token, rid="a"):
    return await request(ws, {"op": "auth", "token": token, "id": rid})


async def closed_with(ws, code, reason, timeout=10):
    """Reads until the server closes `ws`; its close frame must carry `code`
    and a reason starting with `reason`."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == code, (e.rcvd, e.sent)
        assert e.rcvd.reason.startswith(reason), e.rcvd.reason
        return e.rcvd.reason


def metric(c, node, name):
    """The sum of `name`'s samples on `node`'s /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{c.http[node]}/metrics", timeout=5).read()
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def client_tokens_are_signed_expire_and_are_revoked_everywhere(c):
    import hashlib
    import hmac
    ana_token = c.token("ana")
    # A token in a URL is refused (1008), with where it goes instead.
    ws = await websockets.connect(c.url("n1") + "?user=ana&token=" + ana_token)
    print("token in a URL:", await closed_with(ws, 1008, "a token goes in the first message"))
    # Forgeries: a role or user changed, alg none, another cluster's name,
    # signed with the cluster secret, or from another key; all refused.
    ws = await websockets.connect(c.url("n2"))
    secret = re.search(r'secret = "([^"]+)"', open(c.conf).read()).group(1)
    head_payload = ana_token.rsplit(".", 1)[0]
    by_secret = head_payload + "." + b64url(
        hmac.new(secret.encode(), head_payload.encode(), hashlib.sha256).digest())
    attempts = {
        "role changed": (forged(ana_token, role="operator"), "bad signature"),
        "user changed": (forged(ana_token, sub="operator"), "bad signature"),
        "alg none": (forged(ana_token, alg="none"), "only alg HS256"),
        "signed with the cluster secret": (by_secret, "bad signature"),
        "garbage": ("x.y", "not a JSON Web Token"),
        "no token": ("", "no token"),
    }
    for what, (token, why) in attempts.items():
        m = await auth(ws, token, what)
        assert m["type"] == "error" and m["error"] == "unauthorized", (what, m)
        assert why in m["message"], (what, m)
    m = await request(ws, {"op": "subscribe", "channel": "alerts", "id": "still"})
    assert m["error"] == "unauthorized", m
    # A genuine token works; a token for one user cannot be presented as another's.
    m = await request(ws, {"op": "auth", "token": ana_token, "user": "bob", "id": "other"})
    assert m["error"] == "unauthorized" and "another user" in m["message"], m
    m = await auth(ws, ana_token)
    assert m["ok"] and m["user"] == "ana" and not m["operator"], m
    assert 3500 <= m["expires_at"] - time.time() <= 3601, m
    # An operator token opens another user's feed; ana's does not.
    m = await request(ws, {"op": "feed", "user": "bob", "id": "bob"})
    assert m["error"] == "unauthorized", m
    # A token for 2 s: accepted, then the connection is closed when it
    # expires, and the same token is refused afterwards.
    short = c.token("carl", ttl="2s")
    carl = await websockets.connect(c.url("n3"))
    assert (await auth(carl, short))["ok"]
    t0 = time.monotonic()
    print("expired:", await closed_with(carl, 1008, "token expired", timeout=10))
    assert time.monotonic() - t0 < 5
    carl = await websockets.connect(c.url("n3"))
    m = await auth(carl, short)
    assert m["error"] == "unauthorized" and "expired" in m["message"], m
    # Revocation: ana is connected to n1 and n3; the shell revokes her
    # tokens through n2's agent (the first node), both connections close,
    # and her old token is refused everywhere.
    on1 = await c.connect("n1", "ana")
    on3 = await c.connect("n3", "ana")
    for x in (on1, on3):
        assert (await recv_json(x))["ok"]
    bob = await c.connect("n1", "bob")
    assert (await recv_json(bob))["ok"]
    out = subprocess.run([c.binary, "shell", "--config", c.conf, "-c", "token revoke ana"],
                         capture_output=True, text=True, timeout=60)
    print(out.stdout, out.stderr)
    assert out.returncode == 0 and "revoked the client tokens of ana" in out.stdout, out
    await closed_with(on1, 1008, "token revoked", timeout=10)
    await closed_with(on3, 1008, "token revoked", timeout=10)
    # Every node refuses the old token within a second or two of the
    # revocation (the others read it from Redis every second).
    revoked_at = time.monotonic()
    for node in ("n1", "n2", "n3"):
        while True:
            x = await websockets.connect(c.url(node))
            m = await auth(x, ana_token)
            await x.close()
            if m.get("error") or time.monotonic() - revoked_at > 3:
                break
        assert m.get("error") == "unauthorized" and "revoked" in m["message"], (node, m)
    print(f"refused everywhere {time.monotonic() - revoked_at:.2f} s after the revocation")
    # Bob is untouched.
    assert (await request(bob, {"op": "ping", "id": "bob-alive"}))["type"] == "pong"
    # A token ana gets after the revocation works (tokens issued within the
    # revocation's second are refused too: try again, bounded).
    deadline = time.monotonic() + 5
    while True:
        x = await websockets.connect(c.url("n2"))
        m = await auth(x, c.token("ana"))
        if m.get("ok") or time.monotonic() > deadline:
            break
    assert m.get("ok"), m
    # A revoked connection and a restarted node: the revocation is in Redis.
    assert "ana" in c.redis_cli("HGETALL", "troupe:revoked-client-tokens")
    # Counted: 6 forgeries, another user's, the URL, the expired, 3 revoked;
    # closed: 1 expired, 2 revoked. (/metrics is rendered once a second.)
    deadline = time.monotonic() + 10
    while True:
        fails = sum(metric(c, n, "troupe_ws_auth_failures_total") for n in ("n1", "n2", "n3"))
        closed = sum(metric(c, n, "troupe_ws_closed_by_policy_total") for n in ("n1", "n2", "n3"))
        if fails >= len(attempts) + 6 and closed >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    print(f"auth failures {fails}, closed by policy {closed}")
    assert fails >= len(attempts) + 6 and closed >= 3, (fails, closed)


async def clients_without_a_token_are_closed_when_idle(c):
    # idle = 2 s here. An anonymous client that only pings is closed; one
    # that makes requests stays; an authenticated one that only pings stays.
    pinger = await websockets.connect(c.url("n1"))
    busy = await websockets.connect(c.url("n1"))
    user = await c.connect("n1", "ana")
    assert (await recv_json(user))["ok"]
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 6:
        try:
            await request(pinger, {"op": "ping", "id": "p"})
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 1008 and e.rcvd.reason == "idle without a token", e.rcvd
            closed = True
            break
        await request(busy, {"op": "trending", "k": 1, "id": "t"})
        await request(user, {"op": "ping", "id": "u"})
        await asyncio.sleep(0.25)  # the client's own pace between requests
    assert closed, "an idle client without a token stayed"
    took = time.monotonic() - t0
    print(f"idle anonymous client closed after {took:.1f} s")
    assert 1.5 <= took <= 5, took
    assert (await request(busy, {"op": "ping", "id": "b"}))["type"] == "pong"
    assert (await request(user, {"op": "ping", "id": "u2"}))["type"] == "pong"
    deadline = time.monotonic() + 10  # /metrics is rendered once a second
    while metric(c, "n1", "troupe_ws_closed_by_policy_total") < 1:
        assert time.monotonic() < deadline, "the idle close was not counted"
        await asyncio.sleep(0.2)


async def clients_reach_the_node_over_https_and_wss_only(c):
    """With `[cluster.tls] clients = true` the client port speaks TLS with
    the node's certificate: https:// and wss:// work for a client that
    trusts the cluster's CA; plain http:// and ws://, and a client that
    does not trust the CA, get nothing."""
    import ssl
    import urllib.error
    import urllib.request
    port = c.http["n1"]
    assert c.health("n1")["websocket"] is True
    async with c.connect("n1", "ana") as ws:
        assert (await recv_json(ws))["ok"]
        t = await request(ws, {"op": "trending", "k": 2, "id": "t"})
        assert t["type"] == "trending", t
    # Plain HTTP and WebSocket on the TLS port: no answer, the connection ends.
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        raise AssertionError("plain http:// was answered on the TLS port")
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        print("plain http://:", type(e).__name__, e)
    try:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5)
        await ws.close()
        raise AssertionError("plain ws:// was accepted on the TLS port")
    except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError) as e:
        print("plain ws://:", type(e).__name__, e)
    # A client that trusts only the system's CAs refuses the node's certificate.
    try:
        await websockets.connect(c.url("n1"), ssl=ssl.create_default_context(), open_timeout=5)
        raise AssertionError("a client without the cluster's CA accepted the certificate")
    except ssl.SSLCertVerificationError as e:
        print("without the cluster's CA:", e.verify_message)
    # The certificate the client port presents is the node's own (names n2).
    with socket_to(port=c.http["n2"]) as raw:
        with c.ssl.wrap_socket(raw, server_hostname="n2") as tls:
            san = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
            assert san == ["n2"], san


def socket_to(port):
    import socket
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def variant_bucket(user):
    """The user's A/B bucket, 0 to 99, as the ranker computes it: FNV-1a
    (64 bits) of "ranking-variant:" + user, modulo 100."""
    h = 14695981039346656037
    for b in ("ranking-variant:" + user).encode():
        h = ((h ^ b) * 1099511628211) % 2**64
    return h % 100


def shell(c, command):
    p = subprocess.run([c.binary, "shell", "--config", c.conf, "--json", "-c", command],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (command, p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


async def ranking_variants_split_users_and_count_reads_of_what_they_showed(c):
    """Two variants, half the users each: `control` (the formula's weights)
    and `fresh` (recency alone). Each user's feed names its variant and is
    ranked by its weights; a read of an article the user's own feed showed
    counts once for that variant; reads of articles not shown, a second
    read, an anonymous read and an operator's look at another user's feed
    count nothing. `troupe shell -c ranking` sums the nodes and compares."""
    kafka = Kafka(c.kafka)
    users = {}
    for i in range(1000):
        arm = "control" if variant_bucket(f"u{i}") < 50 else "fresh"
        users.setdefault(arm, f"u{i}")
        if len(users) == 2:
            break
    for u in users.values():
        c.redis_cli("HSET", f"prefs:{u}", "bias", "0.5", "category:politics", "1",
                    "other", "0")
    clients = {}
    for arm, node in (("control", "n2"), ("fresh", "n3")):
        ws = await c.connect(node, users[arm])
        assert (await recv_json(ws))["type"] == "auth"
        await request(ws, {"op": "subscribe", "channel": "breaking:probe", "id": 0})
        clients[arm] = ws
    await ready(kafka, list(clients.values()))
    # Politics 30 hours old matches both users' taste; sports is brand new.
    fixed = [article("ab-politics", "politics", 0.5, 30 * HOUR),
             article("ab-sports", "sports", 0.5, 0)]
    for a in fixed:
        kafka.send("articles", a)
    kafka.flush()
    shown = {"control": [0, 0], "fresh": [0, 0]}  # feeds, impressions

    async def feed(arm, k):
        f = await request(clients[arm], {"op": "feed", "k": k, "id": f"f-{arm}"})
        if f.get("type") == "feed" and f["source"] == "ranker":
            assert f["variant"] == arm, (arm, f)
            shown[arm][0] += 1
            shown[arm][1] += len(f["items"])
        return f

    want = {"ab-politics", "ab-sports"}
    deadline = time.monotonic() + 30
    feeds = {}
    for arm in clients:
        while True:
            f = await feed(arm, 100)
            if want <= {i["id"] for i in f.get("items", [])}:
                feeds[arm] = f
                break
            assert time.monotonic() < deadline, f
            await pace(clients[arm], 0.2)
    for arm, f in feeds.items():
        got = [i for i in f["items"] if i["id"] in want]
        w = (0.40, 0.30, 0.30) if arm == "control" else (0.0, 0.0, 1.0)
        for item in got:
            comp = item["components"]
            assert item["score"] == w[0] * comp["affinity"] + w[1] * comp["bias_alignment"] \
                + w[2] * comp["recency"], (arm, item)
        order = [i["id"] for i in got]
        assert order == (["ab-politics", "ab-sports"] if arm == "control"
                         else ["ab-sports", "ab-politics"]), (arm, order)
    # The top item only: control shows politics, fresh shows sports.
    top = {arm: (await feed(arm, 1))["items"][0]["id"] for arm in clients}
    assert top == {"control": "ab-politics", "fresh": "ab-sports"}, top
    # Each user reads its top article twice (one read counts) and an
    # article published after its last feed (no feed showed it).
    kafka.send("articles", article("ab-unshown", "weather", 0.5, 0))
    kafka.flush()
    for arm, ws in clients.items():
        for aid in (top[arm], top[arm], "ab-unshown"):
            r = await request(ws, {"op": "read", "article": aid, "id": "r"})
            assert r["type"] == "read", r
    # An anonymous client's read and an operator's look at a user's feed count nothing.
    anon = await c.connect("n2")
    r = await request(anon, {"op": "read", "article": "ab-sports", "id": "r"})
    assert r["type"] == "read", r
    op = await c.connect("n2", "operator")
    await recv_json(op)
    g = await request(op, {"op": "feed", "user": users["fresh"], "k": 5, "id": "g"})
    assert g["variant"] == "fresh", g
    r = await request(op, {"op": "read", "article": g["items"][0]["id"], "id": "r"})
    assert r["type"] == "read", r
    out = shell(c, "ranking")
    rows = {v["name"]: v for v in out["variants"]}
    assert out["baseline"] == "control", out
    for arm in ("control", "fresh"):
        v = rows[arm]
        assert v["share"] == 50, v
        assert (v["feeds"], v["impressions"], v["reads"]) == (shown[arm][0], shown[arm][1], 1), \
            (arm, v, shown[arm])
        assert abs(v["ctr"] - 1 / shown[arm][1]) < 1e-12, v
    assert rows["fresh"]["weights"] == "0.00/0.00/1.00", rows
    assert abs(rows["fresh"]["difference"] - (rows["fresh"]["ctr"] - rows["control"]["ctr"])) \
        < 1e-12, rows
    assert "difference" not in rows["control"], rows
    # The same counts as Prometheus series, on the node that served each
    # user (the collector renders them once a second).
    series = {("n2", 'troupe_ranking_reads_total{node="n2",variant="control"}'): 1,
              ("n2", 'troupe_ranking_feeds_total{node="n2",variant="control"}'): shown["control"][0],
              ("n3", 'troupe_ranking_impressions_total{node="n3",variant="fresh"}'):
              shown["fresh"][1]}
    c.until(f"the ranking series on /metrics: {series}",
            lambda: {k: metric(c, *k) for k in series} == series, 10)
    print("ranking:", {arm: rows[arm] for arm in rows})


CASES = {
    "breaking": (breaking_news_reaches_every_node, {}),
    "feed": (feed_equals_the_formula, {"rate_limit": 1000}),
    "fallback": (ranker_down_gives_trending_then_recovers,
                 {"ranker_node": "n3", "rate_limit": 1000}),
    "slow": (slow_client_is_dropped_without_delaying_others, {"send_queue": 256}),
    "frames": (bad_frames_get_documented_answers, {}),
    "alerts": (alerts_reach_authorised_subscribers_only, {}),
    "hubs": (articles_survive_crashing_hubs, {}),
    "tokens": (client_tokens_are_signed_expire_and_are_revoked_everywhere, {"rate_limit": 1000}),
    "idle": (clients_without_a_token_are_closed_when_idle, {"rate_limit": 1000, "idle": "2s"}),
    "tls": (clients_reach_the_node_over_https_and_wss_only, {"rate_limit": 1000}),
    "ab": (ranking_variants_split_users_and_count_reads_of_what_they_showed,
           {"rate_limit": 1000, "variants": "control:50:0.40/0.30/0.30, fresh:50:0/0/1"}),
}


def main():
    binary, case = sys.argv[1], sys.argv[2]
    fn, opts = CASES[case]
    with Cluster(binary, groups(**opts), tls=case == "tls") as c:
        asyncio.run(asyncio.wait_for(fn(c), 150))
    print(f"{case}: ok")


if __name__ == "__main__":
    main()
