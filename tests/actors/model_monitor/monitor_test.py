#!/usr/bin/python3
"""The model-monitor group on a real three-node cluster (`troupe up`,
embedded Kafka, redis-server) running the fraud pipeline, fed by a real
Kafka client (python3-kafka) with seeded transactions and their labels.

  monitor_test.py TROUPE_BINARY

Checks, against figures this test computes itself from the scored-event
log and the labels it sent: precision, recall and AUC per model version
(labels that arrive before their scores included); malformed labels in the
dead letters with their reasons; no drift on the reference's own kind of
data; its worker killed and restarted by its supervisor; then a
`drift_detected` record on `model-events` naming the feature once the
amounts shift. Every wait is bounded; every process is stopped
by PID.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fraud"))
from troupe_cluster import MODEL, Cluster, pipeline_groups, read_topic  # noqa: E402
from kafka_producer import Producer  # noqa: E402
import fraud_data  # noqa: E402

REFERENCE = MODEL.replace(".json", ".reference.json")
# Drift is judged on the amount alone here: a fresh synthetic stream starts
# cold (no user has history yet), which the history features rightly see.
SKIP = ",".join(f for f in fraud_data.FEATURES if f != "amount")

GROUPS = pipeline_groups(extra=f"""
[[group]]
name = "model-monitor"
domain = "model-monitor"
instances = 1
nodes = ["n2", "n3", "n1"]
settings = {{ reference = "{REFERENCE}", min_events = 300, skip_features = "{SKIP}" }}
""")


def shell(c, command):
    p = subprocess.run([c.binary, "shell", "--config", c.conf, "--json", "-c", command],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)




def binned_auc(pos, neg):
    """The monitor's AUC: 100 score bins, a tie within a bin counting half."""
    def hist(xs):
        h = [0] * 100
        for s in xs:
            h[min(99, max(0, int(s * 100)))] += 1
        return h
    hp, hn = hist(pos), hist(neg)
    below = wins = 0.0
    for i in range(100):
        wins += hp[i] * (below + 0.5 * hn[i])
        below += hn[i]
    return wins / (len(pos) * len(neg))


def monitor_view(c):
    doc = shell(c, "model quality")
    if not doc or not doc["monitors"] or "models" not in doc["monitors"][0]:
        return None
    return doc["monitors"][0]


def main():
    binary = sys.argv[1]
    with Cluster(binary, GROUPS) as c:
        producer = Producer(bootstrap_servers=c.kafka, linger_ms=5)
        pairs = fraud_data.Generator(11, users=150).stream(days=3.0)[:1500]
        sent = {tx["id"]: y for tx, y in pairs}
        # Half the labels go first, before their transactions (they wait for
        # their scores), the rest after.
        def label(tx_id, y):
            return json.dumps({"schema": 1, "transaction": tx_id,
                               "label": "fraud" if y else "legit",
                               "at": int(time.time() * 1000)}).encode()
        early = [(tx["id"], y) for i, (tx, y) in enumerate(pairs) if i % 2 == 0]
        for tx_id, y in early:
            producer.send("fraud-feedback", key=tx_id.encode(), value=label(tx_id, y))
        bad = {b"not json": "not valid JSON",
               json.dumps({"schema": 1, "transaction": "t", "label": "maybe", "at": 1}).encode():
                   "field 'label' must be \"fraud\" or \"legit\"",
               json.dumps({"schema": 1, "transaction": "t", "label": "fraud"}).encode():
                   "missing field 'at'"}
        for value in bad:
            producer.send("fraud-feedback", key=b"bad-label", value=value)
        for tx, _ in pairs:
            producer.send("transactions", key=tx["user"].encode(),
                          value=fraud_data.dumps(tx).encode())
        for i, (tx, y) in enumerate(pairs):
            if i % 2 == 1:
                producer.send("fraud-feedback", key=tx["id"].encode(), value=label(tx["id"], y))
        producer.flush(30)

        def settled():
            v = monitor_view(c)
            m = v and [x for x in v["models"] if x["model"] == "fraud-v1"]
            return m and m[0]["scored"] == len(pairs) and m[0]["labelled"] == len(pairs) and \
                (v, m[0])
        view, m = c.until("every score and label counted", settled)

        # The same figures from the scored-event log and the labels sent.
        log = {}
        for r in read_topic(c.kafka, "fraud-scores"):
            j = json.loads(r.value)
            log[j["transaction"]] = j
        assert set(log) == set(sent), (len(log), len(sent))
        tp = sum(1 for i, y in sent.items() if y and log[i]["alert"])
        fp = sum(1 for i, y in sent.items() if not y and log[i]["alert"])
        fn = sum(1 for i, y in sent.items() if y and not log[i]["alert"])
        assert m["alerts"] == tp + fp, (m, tp, fp)
        assert abs(m["precision"] - tp / (tp + fp)) < 1e-12, (m, tp, fp)
        assert abs(m["recall"] - tp / (tp + fn)) < 1e-12, (m, tp, fn)
        want_auc = binned_auc([log[i]["score"] for i, y in sent.items() if y],
                              [log[i]["score"] for i, y in sent.items() if not y])
        assert abs(m["auc"] - want_auc) < 1e-9, (m["auc"], want_auc)
        assert m["auc"] > 0.8, m
        assert view["waiting_labels"] == 0 and view["dead_letters"] == len(bad), view
        print(f"quality: precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
              f"auc {m['auc']:.3f} over {m['labelled']} labels; psi(amount) "
              f"{m['psi']['amount']:.3f}")
        # The reference's own kind of data: no drift.
        assert m["psi"]["amount"] < 0.25, m["psi"]
        assert not view["events"], view["events"]
        assert not read_topic(c.kafka, "model-events")
        # Each malformed label is a dead letter with its reason.
        letters = {}
        for r in read_topic(c.kafka, "dead-letters"):
            j = json.loads(r.value)
            if j.get("topic") == "fraud-feedback":
                letters[j["value"]] = j["reason"]
        for value, reason in bad.items():
            assert letters.get(value.decode()) == reason, (value, letters)

        # Its worker killed: its supervisor starts it again, it reads on
        # from the committed offsets with a fresh window, and judges again.
        out = shell(c, "kill model-monitor")
        assert out and out["killed"], out
        c.until("the monitor answering again", lambda: (lambda v: v and v["waiting_labels"] == 0
                                                      and v)(monitor_view(c)))

        # A new pattern: the same users, amounts forty times larger.
        shifted = fraud_data.Generator(12, users=150).stream(days=3.0)[:800]
        for tx, _ in shifted:
            tx = dict(tx, amount=round(tx["amount"] * 40, 2), id="shift-" + tx["id"])
            producer.send("transactions", key=tx["user"].encode(),
                          value=fraud_data.dumps(tx).encode())
        producer.flush(30)
        events = c.until("a drift_detected record on model-events",
                       lambda: [json.loads(r.value) for r in read_topic(c.kafka, "model-events")])
        e = events[0]
        assert e["type"] == "drift_detected" and e["model"] == "fraud-v1", e
        assert e["feature"] == "amount" and e["psi"] >= 0.25, e
        assert len(events) == 1, events  # once per crossing
        view = c.until("the event in `model quality`", lambda: (lambda v: v and v["events"] and v)(
            monitor_view(c)))
        assert view["events"][0]["type"] == "drift_detected", view
        node = view["node"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{c.http[node]}/metrics",
                                      timeout=5).read().decode()
        assert 'troupe_model_feature_psi{group="model-monitor",model="fraud-v1",feature="amount"' \
            in text or 'feature="amount"' in text, text[-2000:]
        print(f"drift: {e['feature']} psi {e['psi']:.3f} after {e['scored']} scores in the window")
    print("monitor: ok")


if __name__ == "__main__":
    main()
