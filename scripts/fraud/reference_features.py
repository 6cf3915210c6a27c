"""Writes a generated transaction stream (JSON events as the ingestor reads
them) and the reference features of each, for the test that compares the
feature-enricher's Redis script with them.

  /usr/bin/python3 scripts/fraud/reference_features.py SEED USERS DAYS OUT.json
"""

import json
import sys

import fraud_data


def main():
    seed, users, days, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    pairs = fraud_data.Generator(seed, users=users).stream(days=days)
    txs = [tx for tx, _ in pairs]
    with open(out, "w") as f:
        json.dump({"events": [fraud_data.dumps(tx) for tx in txs],
                   "features": fraud_data.reference_features(txs),
                   "labels": [y for _, y in pairs]}, f)


if __name__ == "__main__":
    main()
