#!/usr/bin/python3
"""The model roll-out on a real three-node cluster (`troupe up`, embedded
Kafka, redis-server) running the fraud pipeline with a model-monitor and a
model-trainer, fed by a real Kafka client (python3-kafka) with labels.

  rollout_test.py TROUPE_BINARY

A retrained candidate goes on trial for 30 % of the users: exactly the
users the hash puts in the canary are scored by it. Their labels make the
model-monitor promote it by itself; the promotion outlives kill -9 of the
node hosting the monitor (read back from model-events) and of a
fraud-detector's node (kept in the state directory). A bad model tried in
shadow scores every transaction beside the model in use without deciding
one alert, and is rolled back by itself. An operator's rollback returns to
the configured model. Through every swap each transaction is scored once,
by the model the roll-out names. Every wait is bounded; every process is
stopped by PID.
"""

import json
import os
import random
import signal
import subprocess
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

SHARE = 30


def groups(registry):
    return pipeline_groups(extra=f"""
[[group]]
name = "model-monitor"
domain = "model-monitor"
instances = 1
nodes = ["n2", "n3", "n1"]
settings = {{ canary_labels = 200, canary_min_fraud = 10, min_events = 1000000 }}

[[group]]
name = "model-trainer"
domain = "model-trainer"
instances = 1
nodes = ["n3", "n1", "n2"]
settings = {{ model = "{MODEL}", registry = "{registry}", min_rows = 300, rounds = 60, on_drift = false, canary_share = {SHARE} }}
""")


def fnv1a_64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def in_canary(user, share):
    return fnv1a_64("model-canary:" + user) % 100 < share


def shell(c, command, timeout=60, rc=0):
    """The shell's answer; for a refused command, its output."""
    x = c.shell(command, timeout, rc)
    return x if rc == 0 else x.stdout + x.stderr


def gift_cards(pairs, rng, prefix, share):
    """A new kind of fraud the configured model misses: gift-card purchases
    (a category it never saw), all fraud. Every id gets `prefix`."""
    out = []
    for tx, y in pairs:
        tx = dict(tx, id=prefix + tx["id"])
        if rng.random() < share:
            tx = dict(tx, category="gift_cards", merchant="m-giftcards",
                      amount=round(rng.uniform(20, 200), 2))
            y = 1
        out.append((tx, y))
    return out


def bad_model(folder):
    """A model that alerts on small amounts: far worse than any in use."""
    import numpy as np
    import xgboost as xgb
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 500, size=(2000, len(fraud_data.FEATURES)))
    y = (x[:, 0] < 100).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1,
                         "seed": 1}, xgb.DMatrix(x, label=y, feature_names=fraud_data.FEATURES),
                        num_boost_round=10)
    booster.set_attr(version="fraud-bad", features=",".join(fraud_data.FEATURES),
                     schema=str(fraud_data.SCHEMA_VERSION))
    path = os.path.join(folder, "fraud-bad.json")
    booster.save_model(path)
    return path


def main():
    with tempfile.TemporaryDirectory(prefix="troupe-registry-") as registry, \
            Cluster(sys.argv[1], groups(registry)) as c:
        run(c, registry)
    print("rollout: ok")


def run(c, registry):
    rng = random.Random(9)
    producer = Producer(bootstrap_servers=c.kafka, linger_ms=5)
    sent = []

    def send(pairs, labels=True):
        for tx, _ in pairs:
            sent.append(tx["id"])
            producer.send("transactions", key=tx["user"].encode(),
                          value=fraud_data.dumps(tx).encode())
        if labels:
            label(pairs)
        producer.flush(30)

    def label(pairs):
        for tx, y in pairs:
            producer.send("fraud-feedback", key=tx["id"].encode(), value=json.dumps(
                {"schema": 1, "transaction": tx["id"], "label": "fraud" if y else "legit",
                 "at": int(time.time() * 1000)}).encode())
        producer.flush(30)

    def scored(pairs, what):
        ids = {tx["id"] for tx, _ in pairs}
        def ready():
            got = {}
            for r in read_topic(c.kafka, "fraud-scores"):
                j = json.loads(r.value)
                if j["transaction"] in ids:
                    got[j["transaction"]] = j
            return got if len(got) == len(ids) else None
        return c.until(what, ready, timeout=120)

    def events(kind):
        return [e for e in (json.loads(r.value) for r in read_topic(c.kafka, "model-events"))
                if e.get("type") == kind]

    def followed(pred, what):
        """Every fraud-detector group's status satisfies `pred`."""
        def ok():
            d = shell(c, "model status")
            rows = d["groups"]["nodes"]
            return d if len(rows) == 3 and all(pred(r.get("model", "")) for r in rows) else None
        return c.until(what, ok, timeout=60)

    def rollout():
        """The monitor's roll-out once it answers (None while it does not)."""
        p = subprocess.run([c.binary, "shell", "--config", c.conf, "--json", "--timeout", "10",
                            "-c", "model status"], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return None
        d = json.loads(p.stdout)["rollout"]
        return d if d.get("ready") else None

    base = fraud_data.Generator(31, users=600).stream(days=4.0)
    assert len(base) >= 8000, len(base)
    # No roll-out yet: the configured model, generation 0.
    d = c.until("the roll-out answered", rollout)
    assert d["rollout"]["generation"] == 0, d
    assert d["rollout"]["candidate"] is None, d

    # Operators' mistakes are refused, and change nothing.
    out = shell(c, "model promote fraud-nosuch", rc=1)
    assert "not on trial" in out, out
    out = shell(c, "model canary /nonexistent/model.json", rc=1)
    assert "model canary" in out, out
    shell(c, "model canary /nonexistent/model.json 0", rc=2)

    # 1. A labelled stream with the new kind of fraud, and a retrained
    #    candidate, put on trial by the trainer for 30 % of the users.
    first = gift_cards(base[:2400], rng, "a-", 0.12)
    send(first)
    scored(first, "the first stream scored")
    out = shell(c, "model train", timeout=330)
    t = out["trained"][0]
    assert t["ok"] and t["accepted"], t
    assert "error" not in t.get("canary", {"error": "none"}), t
    version = t["version"]
    followed(lambda m: f"on trial {version} ({SHARE}% of users)" in m, "the trial followed")
    d = shell(c, "model status")["rollout"]
    cand = d["rollout"]["candidate"]
    assert cand["model"] == version and cand["share"] == SHARE and cand["mode"] == "split", d
    started = events("canary_started")
    assert len(started) == 1 and started[0]["rollout"]["generation"] == 1, started

    # 2. During the trial, exactly the canary's users are scored by it.
    second = gift_cards(base[2400:4800], rng, "b-", 0.2)
    send(second, labels=False)
    got = scored(second, "the second stream scored")
    wrong = [(i, j["user"], j["model"]) for i, j in got.items()
             if j["model"] != (version if in_canary(j["user"], SHARE) else "fraud-v1")]
    assert not wrong, wrong[:10]
    by_candidate = sum(1 for j in got.values() if j["model"] == version)
    print(f"trial: {by_candidate} of {len(got)} transactions scored by {version}")
    assert 0.15 * len(got) < by_candidate < 0.45 * len(got), by_candidate

    # 3. Their labels: the monitor promotes the candidate by itself.
    label(second)
    promoted = c.until("model_promoted", lambda: events("model_promoted"), timeout=120)[0]
    assert promoted["model"] == version and promoted["decided_by"] == "model-monitor", promoted
    assert promoted["candidate"]["recall"] >= promoted["in_use"]["recall"] - 0.05, promoted
    assert promoted["rollout"]["generation"] == 2, promoted
    print(f"promoted: candidate {promoted['candidate']}, in use {promoted['in_use']}")
    followed(lambda m: m.startswith(version) and "on trial" not in m, "the promotion followed")

    # 4. kill -9 of the node hosting the monitor and a fraud-detector: the
    #    roll-out is read back, the restarted group scores with the
    #    promoted model.
    mark = c.mark()
    os.kill(c.pids["n2"], signal.SIGKILL)
    m = c.wait_for(r"^\[up\] n2 started, pid (\d+)$", 30, mark)
    c.pids["n2"] = int(m.group(1))
    c.wait_for(r"\[n2\] scoring with the roll-out's model .*" + version, 90, mark)
    c.wait_for(r"model roll-out 2 read back from model-events", 90, mark)
    d = c.until("the roll-out after kill -9", rollout)
    assert d["rollout"]["generation"] == 2 and d["rollout"]["current"]["model"] == version, d
    third = gift_cards(base[4800:5600], rng, "c-", 0.2)
    send(third)
    got = scored(third, "the third stream scored")
    assert {j["model"] for j in got.values()} == {version}, {j["model"] for j in got.values()}

    # 5. A bad model in shadow: scores everything, decides nothing, and is
    #    rolled back by itself.
    bad = bad_model(registry)
    d = shell(c, f"model canary {bad} shadow")
    assert d["rollout"]["candidate"]["mode"] == "shadow", d
    followed(lambda m: "on trial fraud-bad (shadow)" in m, "the shadow trial followed")
    fourth = gift_cards(base[5600:7400], rng, "d-", 0.15)
    send(fourth, labels=False)
    got = scored(fourth, "the fourth stream scored")
    assert {j["model"] for j in got.values()} == {version}, {j["model"] for j in got.values()}
    assert all(j.get("shadow", {}).get("model") == "fraud-bad" for j in got.values())
    alerts = {r.key.decode(): json.loads(r.value) for r in read_topic(c.kafka, "fraud-alerts")}
    assert all(alerts[i]["model"] == version for i in got if i in alerts)
    label(fourth)
    back = c.until("model_rolled_back", lambda: events("model_rolled_back"), timeout=120)[0]
    assert back["model"] == "fraud-bad" and back["decided_by"] == "model-monitor", back
    print(f"rolled back: candidate {back['candidate']}, in use {back['in_use']}")
    followed(lambda m: m.startswith(version) and "on trial" not in m, "the rollback followed")

    # 6. An operator returns to the configured model.
    d = shell(c, f"model rollback {version}")
    assert d["rollout"]["current"]["path"] == "", d
    followed(lambda m: m.startswith("fraud-v1"), "the operator's rollback followed")
    fifth = gift_cards(base[7400:8000], rng, "e-", 0.1)
    send(fifth)
    got = scored(fifth, "the fifth stream scored")
    assert {j["model"] for j in got.values()} == {"fraud-v1"}, {j["model"] for j in got.values()}

    # Through every swap: each transaction in the scored-event log once.
    ids = [json.loads(r.value)["transaction"] for r in read_topic(c.kafka, "fraud-scores")]
    assert len(ids) == len(set(ids)), len(ids) - len(set(ids))
    assert set(sent) <= set(ids), len(set(sent) - set(ids))
    changes = [e["type"] for e in (json.loads(r.value) for r in read_topic(c.kafka, "model-events"))
               if "rollout" in e]
    assert sorted(changes) == sorted(["canary_started", "model_promoted", "canary_started",
                                      "model_rolled_back", "model_rolled_back"]), changes
    bad_lines = [ln for ln in c.lines if "unexpected message" in ln]
    assert not bad_lines, bad_lines


if __name__ == "__main__":
    main()
