"""Writes a generated transaction stream and the alerts the pipeline must
raise for it: the reference features, scored by python3-xgboost with the
given model, over the threshold.

  /usr/bin/python3 scripts/fraud/expected_alerts.py SEED USERS DAYS MODEL THRESHOLD OUT.json
"""

import json
import sys

import numpy as np
import xgboost as xgb

import fraud_data


def main():
    seed, users, days = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    model, threshold, out = sys.argv[4], float(sys.argv[5]), sys.argv[6]
    pairs = fraud_data.Generator(seed, users=users).stream(days=days)
    txs = [tx for tx, _ in pairs]
    rows = np.array(fraud_data.reference_features(txs), dtype=np.float32)
    booster = xgb.Booster(model_file=model)
    booster.set_param({"nthread": 1})
    pred = booster.predict(xgb.DMatrix(rows, feature_names=fraud_data.FEATURES))
    with open(out, "w") as f:
        json.dump({"events": [[tx["user"], fraud_data.dumps(tx)] for tx in txs],
                   "alerts": [tx["id"] for tx, p in zip(txs, pred) if p > threshold],
                   "scores": {tx["id"]: float(p) for tx, p in zip(txs, pred)},
                   "labels": [y for _, y in pairs]}, f)


if __name__ == "__main__":
    main()
