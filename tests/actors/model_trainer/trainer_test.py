#!/usr/bin/python3
"""The model-trainer group on a real three-node cluster (`troupe up`,
embedded Kafka, redis-server) running the fraud pipeline, fed by a real
Kafka client (python3-kafka): a new kind of fraud the model in use misses
(purchases in a category it never saw, all fraud), labelled.

  trainer_test.py TROUPE_BINARY

`model train` trains a candidate with libxgboost's C API from the
scored-event log joined with the labels, compares it with the model in use
on the held-out slice and registers it (model, reference, meta with its
SHA-256; a `model_registered` record); `model load` puts it in use and the
new kind of fraud raises alerts it did not raise before. A
`drift_detected` record on `model-events` makes the trainer train again by
itself. Every wait is bounded; every process is stopped by PID.
"""

import hashlib
import json
import os
import random
import sys
import tempfile
import time


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fraud"))
from troupe_cluster import MODEL, Cluster, pipeline_groups, read_topic  # noqa: E402
from kafka_producer import Producer  # noqa: E402
import fraud_data  # noqa: E402


def groups(registry):
    return pipeline_groups(extra=f"""
[[group]]
name = "model-trainer"
domain = "model-trainer"
instances = 1
nodes = ["n3", "n1", "n2"]
settings = {{ model = "{MODEL}", registry = "{registry}", min_rows = 300, rounds = 60, cooldown = "0s" }}
""")


def gift_cards(pairs, rng, prefix, share):
    """The new kind of fraud: some of the users' transactions become gift-card
    purchases (a category the model never saw), all fraud."""
    out = []
    for tx, y in pairs:
        if rng.random() < share:
            tx = dict(tx, id=prefix + tx["id"], category="gift_cards",
                      merchant="m-giftcards", amount=round(rng.uniform(20, 200), 2))
            y = 1
        out.append((tx, y))
    return out


def main():
    with tempfile.TemporaryDirectory(prefix="troupe-registry-") as registry, \
            Cluster(sys.argv[1], groups(registry)) as c:
        run(c, registry)
    print("trainer: ok")


def run(c, registry):
    rng = random.Random(5)
    producer = Producer(bootstrap_servers=c.kafka, linger_ms=5)

    def send(pairs):
        for tx, _ in pairs:
            producer.send("transactions", key=tx["user"].encode(),
                          value=fraud_data.dumps(tx).encode())
        for tx, y in pairs:
            producer.send("fraud-feedback", key=tx["id"].encode(), value=json.dumps(
                {"schema": 1, "transaction": tx["id"], "label": "fraud" if y else "legit",
                 "at": int(time.time() * 1000)}).encode())
        producer.flush(30)

    base = fraud_data.Generator(21, users=200).stream(days=3.0)[:2400]
    first = gift_cards(base, rng, "g1-", 0.12)
    send(first)
    ids = {tx["id"] for tx, _ in first}
    c.until("every transaction in the scored-event log",
          lambda: ids <= {json.loads(r.value)["transaction"]
                          for r in read_topic(c.kafka, "fraud-scores")})
    # The model in use misses the new kind of fraud.
    alerted = {r.key.decode() for r in read_topic(c.kafka, "fraud-alerts")}
    new_kind = [tx["id"] for tx, _ in first if tx["category"] == "gift_cards"]
    before = sum(1 for i in new_kind if i in alerted) / len(new_kind)

    out = c.shell("model train", timeout=330)
    t = out["trained"][0]
    assert t["ok"] and t["accepted"], t
    assert t["candidate"]["auc"] > t["current"]["auc"], t
    assert t["rows"] + t["held_out"] == len(first), t
    version, path = t["version"], t["path"]
    # Registered: the model, its reference and its meta, with its checksum.
    folder = os.path.join(registry, version)
    assert os.path.dirname(path) == folder, (path, folder)
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == t["sha256"], t
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    assert meta["version"] == version and meta["sha256"] == t["sha256"], meta
    with open(os.path.join(folder, "reference.json")) as f:
        ref = json.load(f)
    assert ref["model"] == version and len(ref["features"]) == 11, ref["model"]
    events = c.until("model_registered on model-events", lambda: [
        e for e in (json.loads(r.value) for r in read_topic(c.kafka, "model-events"))
        if e["type"] == "model_registered"])
    assert events[0]["model"] == version and events[0]["sha256"] == t["sha256"], events

    # In use: the new kind of fraud now raises alerts.
    loaded = c.shell(f"model load {path}")
    assert all(n.get("loaded", "").startswith(version) for n in loaded["nodes"]), loaded
    second = gift_cards(fraud_data.Generator(22, users=200).stream(days=3.0)[:800], rng,
                        "g2-", 0.25)
    send(second)
    new_kind2 = [tx["id"] for tx, _ in second if tx["category"] == "gift_cards"]
    def caught():
        alerts = {r.key.decode(): json.loads(r.value) for r in read_topic(c.kafka, "fraud-alerts")}
        done = {json.loads(r.value)["transaction"] for r in read_topic(c.kafka, "fraud-scores")}
        if not {tx["id"] for tx, _ in second} <= done:
            return None
        return alerts
    alerts = c.until("the second stream scored", caught)
    after = sum(1 for i in new_kind2 if i in alerts) / len(new_kind2)
    assert all(alerts[i]["model"] == version for i in new_kind2 if i in alerts)
    print(f"new kind of fraud caught: {before:.3f} before, {after:.3f} after "
          f"(candidate AUC {t['candidate']['auc']:.3f} vs {t['current']['auc']:.3f} in use, "
          f"trained in {t['training_seconds']:.2f} s on {t['rows']} rows)")
    assert after >= 0.8 and after >= 2 * before, (before, after)

    # Drift reported by the monitor: the trainer trains by itself.
    producer.send("model-events", key=b"fraud-v1", value=json.dumps(
        {"schema": 1, "type": "drift_detected", "model": version, "feature": "category",
         "psi": 1.0, "at": int(time.time() * 1000)}).encode())
    producer.flush(30)
    again = c.until("a second model_registered, on drift", lambda: [
        e for e in (json.loads(r.value) for r in read_topic(c.kafka, "model-events"))
        if e["type"] in ("model_registered", "model_rejected")
        and e.get("reason", "").startswith("drift_detected")], timeout=180)
    assert again[0]["reason"] == f"drift_detected of {version}", again


if __name__ == "__main__":
    main()
