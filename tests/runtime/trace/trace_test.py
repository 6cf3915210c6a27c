#!/usr/bin/python3
"""Tracing on a real three-node cluster (`troupe up`, embedded Kafka,
redis-server) running the fraud pipeline, fed by a real Kafka client
(python3-kafka) with and without W3C `traceparent` headers.

  trace_test.py TROUPE_BINARY

A transaction whose record carries a sampled traceparent keeps its trace
id through every stage and every node: the alert and the scored event name
it; `troupe shell -c 'trace ID'` shows ingest, enrich, score and alert
with their nodes, groups, instances and timings, each stage the child of
the one before and ingest the child of the producer's span; the same spans
are on the `traces` topic as OTLP JSON. A transaction without a header
(or with a malformed one) gets a new trace of its own and is traced all
the same; an unsampled one is not exported. Every wait is bounded;
every process is stopped by PID.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fraud"))
from troupe_cluster import Cluster, pipeline_groups, read_topic  # noqa: E402
from kafka_producer import Producer  # noqa: E402
import fraud_data  # noqa: E402

GROUPS = pipeline_groups(alerter="threshold = 0.0")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def main():
    with Cluster(sys.argv[1], GROUPS, cluster="trace_sample = 0.0\n") as c:
        run(c)
    print("trace: ok")


def run(c):
    pairs = fraud_data.Generator(12, users=50).stream(days=1.0)[:300]
    txs = [dict(tx, id=f"tr-{i}") for i, (tx, _) in enumerate(pairs)]
    producer = Producer(bootstrap_servers=c.kafka, linger_ms=5)
    traced = txs[0]["id"]       # a sampled traceparent
    unsampled = txs[1]["id"]    # a traceparent, not sampled
    malformed = txs[2]["id"]    # a header that is not one
    for i, tx in enumerate(txs):
        headers = []
        if i == 0:
            headers = [("traceparent", f"00-{TRACE}-{PARENT}-01".encode())]
        elif i == 1:
            headers = [("traceparent", f"00-{'1' * 32}-{'2' * 16}-00".encode())]
        elif i == 2:
            headers = [("traceparent", b"00-not-a-trace")]
        producer.send("transactions", key=tx["user"].encode(),
                      value=fraud_data.dumps(tx).encode(), headers=headers or None)
    producer.flush(30)
    ids = {tx["id"] for tx in txs}

    def scored():
        got = {}
        for r in read_topic(c.kafka, "fraud-scores"):
            j = json.loads(r.value)
            got[j["transaction"]] = j
        return got if ids <= set(got) else None
    log = c.until("every transaction in the scored-event log", scored, timeout=120)
    alerts = {r.key.decode(): json.loads(r.value) for r in read_topic(c.kafka, "fraud-alerts")}
    # The producer's trace, in the scored event and the alert (threshold 0:
    # every transaction alerts).
    assert log[traced]["trace"] == TRACE, log[traced]
    assert alerts[traced]["trace"] == TRACE, alerts[traced]
    assert log[unsampled]["trace"] == "1" * 32, log[unsampled]
    # No header, or a bad one: a new trace each, 32 hex digits, none shared.
    assert log[malformed]["trace"] not in (TRACE, "1" * 32), log[malformed]
    fresh = [log[tx["id"]]["trace"] for tx in txs[2:]]
    assert all(len(t) == 32 and int(t, 16) != 0 for t in fresh), fresh[:3]
    assert len(set(fresh)) == len(fresh)

    # The path of the traced transaction: four stages, parent to child.
    def path(tx_id):
        d = c.shell(f"trace {tx_id}")
        names = [s["name"] for s in d["spans"]]
        return d if {"ingest", "enrich", "score", "alert"} <= set(names) else None
    d = c.until("the traced transaction's spans", lambda: path(traced), timeout=30)
    spans = {s["name"]: s for s in d["spans"]}
    assert all(s["trace_id"] == TRACE for s in d["spans"]), d
    assert spans["ingest"]["parent_span_id"] == PARENT, spans["ingest"]
    assert spans["enrich"]["parent_span_id"] == spans["ingest"]["span_id"], spans
    assert spans["score"]["parent_span_id"] == spans["enrich"]["span_id"], spans
    assert spans["alert"]["parent_span_id"] == spans["score"]["span_id"], spans
    for name, s in spans.items():
        assert s["outcome"] == "ok" and s["node"] in ("n1", "n2", "n3"), s
        assert s["group"] == {"ingest": "ingestor", "enrich": "feature-enricher",
                              "score": "fraud-detector", "alert": "alerter"}[name], s
        assert 0 <= s["instance"] <= 2 and s["duration_ms"] >= 0, s
    # Ingest holds the stages: it starts first and ends last.
    assert spans["ingest"]["start_ns"] <= spans["enrich"]["start_ns"], spans
    assert spans["ingest"]["end_ns"] >= spans["alert"]["end_ns"], spans
    assert spans["enrich"]["start_ns"] <= spans["score"]["start_ns"] <= spans["alert"]["start_ns"]
    text = subprocess.run([c.binary, "shell", "--config", c.conf, "-c", f"trace {traced}"],
                          capture_output=True, text=True, timeout=60).stdout
    assert f"trace {TRACE} (sampled" in text and "feature-enricher#" in text, text
    # A transaction that came without a trace is traced all the same.
    other = txs[5]["id"]
    d = c.until("a new trace's spans", lambda: path(other), timeout=30)
    assert {s["trace_id"] for s in d["spans"]} == {log[other]["trace"]}, d

    # The sampled trace on the traces topic, as OTLP JSON; the unsampled
    # and the new ones (trace_sample 0) are not.
    def exported():
        out = {}
        for r in read_topic(c.kafka, "traces"):
            req = json.loads(r.value)
            for rs in req["resourceSpans"]:
                node = {a["key"]: a["value"]["stringValue"]
                        for a in rs["resource"]["attributes"]}["troupe.node"]
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        out.setdefault(s["traceId"], []).append((node, s))
        return out if len(out.get(TRACE, [])) >= 4 else None
    out = c.until("the sampled spans on the traces topic", exported, timeout=30)
    assert set(out) == {TRACE}, set(out)
    by_id = {s["spanId"]: (node, s) for node, s in out[TRACE]}
    for name, s in spans.items():
        node, o = by_id[s["span_id"]]
        assert node == s["node"] and o["name"] == name, (node, o)
        assert o.get("parentSpanId", "") == s["parent_span_id"], o
        assert int(o["endTimeUnixNano"]) - int(o["startTimeUnixNano"]) == s["end_ns"] - s["start_ns"]
        assert o["status"]["code"] == 1, o

    # A transaction nobody read: a clear failure.
    p = c.shell("trace tr-nosuch", rc=1)
    assert json.loads(p.stdout)["spans"] == [], p
    p = subprocess.run([c.binary, "shell", "--config", c.conf, "-c", "trace tr-nosuch"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "no node holds spans" in p.stdout + p.stderr, p


if __name__ == "__main__":
    main()
