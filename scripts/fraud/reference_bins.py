"""The training reference of a fraud model: per feature, the bin edges
(the training rows' deciles, without repeats) and the share of training
rows in each bin. The model-monitor group compares the live feature
distribution of each model's scores with it (population stability index).

  /usr/bin/python3 scripts/fraud/reference_bins.py OUT.json [--seed 1] [--users 3000] [--days 7]

scripts/train-fraud-model writes it beside the model (MODEL.reference.json);
the same seed gives the same file.
"""

import argparse
import json

import numpy as np

import fraud_data


def reference(rows, version):
    rows = np.asarray(rows, dtype=np.float32)
    out = {"schema": 1, "model": version, "rows": int(len(rows)), "features": []}
    for i, name in enumerate(fraud_data.FEATURES):
        col = rows[:, i].astype(np.float64)
        edges = sorted({float(np.float32(q)) for q in np.quantile(col, [k / 10 for k in range(1, 10)])})
        # Bins: (-inf, e0], (e0, e1], ..., (e_last, inf).
        idx = np.searchsorted(np.array(edges), col, side="left")
        counts = np.bincount(idx, minlength=len(edges) + 1)
        out["features"].append({"name": name, "edges": edges,
                                "shares": [float(c) / len(col) for c in counts]})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--version", default="fraud-v1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--days", type=float, default=7.0)
    a = p.parse_args()
    pairs = fraud_data.Generator(a.seed, users=a.users).stream(days=a.days)
    rows = fraud_data.reference_features([tx for tx, _ in pairs])
    with open(a.out, "w") as f:
        json.dump(reference(rows, a.version), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
