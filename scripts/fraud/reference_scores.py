"""Writes rows of fraud features and python3-xgboost's predictions for them,
for the test that compares Troupe's scores with them.

  /usr/bin/python3 scripts/fraud/reference_scores.py MODEL SEED USERS OUT.json
"""

import json
import sys

import numpy as np
import xgboost as xgb

import fraud_data


def main():
    model, seed, users, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    pairs = fraud_data.Generator(seed, users=users).stream(days=2.0)
    rows = np.array(fraud_data.reference_features([tx for tx, _ in pairs]), dtype=np.float32)
    booster = xgb.Booster(model_file=model)
    booster.set_param({"nthread": 1})
    pred = booster.predict(xgb.DMatrix(rows, feature_names=fraud_data.FEATURES))
    with open(out, "w") as f:
        json.dump({"version": booster.attr("version"), "rows": rows.tolist(),
                   "predictions": [float(p) for p in pred],
                   "labels": [y for _, y in pairs]}, f)


if __name__ == "__main__":
    main()
