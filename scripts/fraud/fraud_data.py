"""Synthetic card transactions with fraud labels, and the reference
implementation of the fraud features.

The feature-enricher computes the same features in Redis (its Lua script in
actors/feature_enricher/); this module is the reference the tests compare it
with, and what the model is trained on. The definitions, in this order (the
model's feature vector):

  0 amount           the transaction's amount
  1 tx_1h            the user's transactions in the hour before this one
  2 tx_24h           ... in the 24 hours before this one
  3 amount_z         (amount - mean) / stddev of the user's earlier amounts
                     (Welford's running mean and variance; 0 with fewer than
                     2 earlier transactions or a zero stddev)
  4 merchants_24h    distinct merchants of the user in the 24 hours before
  5 secs_since_last  seconds since the user's previous transaction, at most
                     604800 (7 days; also the value for a first transaction)
  6 new_country      1 if the user has history and never used this country
  7 new_device       1 if the user has history and never used this device
  8 prior_tx         the user's earlier transactions, at most 1000
  9 hour_of_day      the transaction's hour, UTC (0-23)
 10 category         the category's code (CATEGORIES below; unknown: -1)

"Before" means strictly earlier in the user's stream: a transaction never
counts itself. Replaying a transaction gives the features of its first pass.
"""

import json
import math
import random

SCHEMA_VERSION = 1
CATEGORIES = ["grocery", "restaurant", "fuel", "transport", "clothing", "pharmacy",
              "entertainment", "travel", "electronics", "gift_cards", "jewelry", "crypto"]
RISKY = ["electronics", "gift_cards", "jewelry", "crypto"]
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "GB", "US", "BR", "NG", "RU", "VN"]
FEATURES = ["amount", "tx_1h", "tx_24h", "amount_z", "merchants_24h", "secs_since_last",
            "new_country", "new_device", "prior_tx", "hour_of_day", "category"]
MAX_GAP = 604800.0
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


class UserState:
    """What the enricher keeps per user (Redis keys u:{user}:*)."""

    def __init__(self):
        self.times = []            # earlier transaction times (ms)
        self.merchants = {}        # merchant -> last time (ms)
        self.countries = set()
        self.devices = set()
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.last = None


def features(state, tx):
    """The feature vector of `tx` given the user's earlier stream; then
    updates `state` with `tx` (what the Lua script does in one call)."""
    ts = tx["timestamp"]
    tx_1h = sum(1 for t in state.times if ts - HOUR_MS < t <= ts)
    tx_24h = sum(1 for t in state.times if ts - DAY_MS < t <= ts)
    if state.n >= 2:
        std = math.sqrt(state.m2 / (state.n - 1))
        z = (tx["amount"] - state.mean) / std if std > 0 else 0.0
    else:
        z = 0.0
    merchants = sum(1 for m, t in state.merchants.items() if ts - DAY_MS < t <= ts)
    gap = MAX_GAP if state.last is None else min(MAX_GAP, max(0.0, (ts - state.last) / 1000.0))
    history = state.n > 0
    new_country = 1 if history and tx["country"] not in state.countries else 0
    new_device = 1 if history and tx["device"] not in state.devices else 0
    hour = (ts // HOUR_MS) % 24
    category = CATEGORIES.index(tx["category"]) if tx["category"] in CATEGORIES else -1
    row = [tx["amount"], tx_1h, tx_24h, z, merchants, gap, new_country, new_device,
           min(state.n, 1000), hour, category]
    # update, as the script does
    state.times = [t for t in state.times if t > ts - DAY_MS] + [ts]
    state.merchants = {m: t for m, t in state.merchants.items() if t > ts - DAY_MS}
    state.merchants[tx["merchant"]] = ts
    state.countries.add(tx["country"])
    state.devices.add(tx["device"])
    state.n += 1
    delta = tx["amount"] - state.mean
    state.mean += delta / state.n
    state.m2 += delta * (tx["amount"] - state.mean)
    state.last = ts if state.last is None else max(state.last, ts)
    return [float(x) for x in row]


def reference_features(transactions):
    """Features of each transaction of a stream ordered per user by arrival."""
    states = {}
    return [features(states.setdefault(tx["user"], UserState()), tx) for tx in transactions]


class Generator:
    """Users with habits, and fraud of five kinds: bursts, unusual amounts,
    account takeover (a new device, mostly from another country), card
    testing at night, and fraud that looks like the user. Legitimate noise
    that resembles fraud: travel (sometimes with a new phone), big purchases
    in risky categories, shopping sprees at new merchants."""

    def __init__(self, seed, users=2000, start_ms=1_767_225_600_000, fraud_rate=0.012):
        self.rng = random.Random(seed)
        self.start = start_ms
        self.fraud_rate = fraud_rate
        self.users = []
        for i in range(users):
            r = self.rng
            self.users.append({
                "id": f"u-{seed}-{i}",
                "country": r.choice(COUNTRIES[:9]),
                "devices": [f"d-{seed}-{i}-{k}" for k in range(r.choice([1, 1, 2]))],
                "merchants": [f"m-{r.randrange(5000)}" for _ in range(r.randrange(3, 12))],
                "categories": r.sample(CATEGORIES[:8], 3),
                "mu": r.uniform(2.0, 4.5),       # log-amount mean
                "rate": r.uniform(1.0, 6.0),     # transactions per day
            })
        self.seq = 0

    def _tx(self, user, ts, amount, merchant, category, country, device, fraud):
        self.seq += 1
        return {"schema": SCHEMA_VERSION, "id": f"t-{self.seq:09d}-{self.rng.randrange(1 << 30):x}",
                "user": user["id"], "amount": round(amount, 2), "currency": "EUR",
                "merchant": merchant, "category": category, "country": country,
                "device": device, "timestamp": int(ts)}, fraud

    def stream(self, days=7.0):
        """(transaction, label) pairs ordered by time."""
        r = self.rng
        out = []
        end = self.start + int(days * DAY_MS)
        for u in self.users:
            t = self.start + r.expovariate(u["rate"] / DAY_MS)
            while t < end:
                fraud = r.random() < self.fraud_rate
                if not fraud:
                    amount = math.exp(r.gauss(u["mu"], 0.6))
                    country, device = u["country"], r.choice(u["devices"])
                    merchant, category = r.choice(u["merchants"]), r.choice(u["categories"])
                    roll = r.random()
                    if roll < 0.03:                            # travel, sometimes a new phone
                        country = r.choice(COUNTRIES)
                        if r.random() < 0.2:
                            device = f"d-n-{r.randrange(1 << 30):x}"
                            u["devices"].append(device)
                        merchant = f"m-{r.randrange(5000, 9000)}"
                    elif roll < 0.05:                          # a big purchase, often risky
                        amount *= r.uniform(3, 12)
                        category = r.choice(RISKY + u["categories"])
                        merchant = f"m-{r.randrange(5000, 9000)}"
                    elif roll < 0.07:                          # a shopping spree
                        tt = t
                        for _ in range(r.randrange(2, 5)):
                            out.append(self._tx(u, tt, math.exp(r.gauss(u["mu"], 0.6)),
                                                f"m-{r.randrange(5000, 9000)}",
                                                r.choice(CATEGORIES[:9]), country, device, 0))
                            tt += r.uniform(60_000, 900_000)
                    out.append(self._tx(u, t, amount, merchant, category, country, device, 0))
                else:
                    kind = r.choice(["burst", "amount", "takeover", "testing", "quiet"])
                    if kind == "burst":
                        tt = t
                        for _ in range(r.randrange(3, 7)):
                            out.append(self._tx(u, tt, math.exp(r.gauss(u["mu"] + 0.5, 0.7)),
                                                f"m-{r.randrange(5000, 9000)}",
                                                r.choice(RISKY + CATEGORIES[:8]),
                                                u["country"], r.choice(u["devices"]), 1))
                            tt += r.uniform(10_000, 300_000)
                    elif kind == "amount":
                        out.append(self._tx(u, t, math.exp(u["mu"]) * r.uniform(4, 20),
                                            f"m-{r.randrange(5000, 9000)}",
                                            r.choice(RISKY + CATEGORIES[:8]),
                                            u["country"], r.choice(u["devices"]), 1))
                    elif kind == "takeover":
                        country = r.choice(COUNTRIES) if r.random() < 0.7 else u["country"]
                        device = f"d-x-{r.randrange(1 << 30):x}"
                        tt = t
                        for _ in range(r.randrange(1, 4)):
                            out.append(self._tx(u, tt, math.exp(r.gauss(u["mu"] + 0.7, 0.8)),
                                                f"m-{r.randrange(5000, 9000)}", r.choice(RISKY),
                                                country, device, 1))
                            tt += r.uniform(30_000, 1_800_000)
                    elif kind == "testing":  # card testing at night: tiny amounts
                        tt = t - (t % DAY_MS) + r.uniform(0, 5) * HOUR_MS
                        for _ in range(r.randrange(2, 6)):
                            out.append(self._tx(u, tt, r.uniform(0.5, 5.0),
                                                f"m-{r.randrange(5000, 9000)}",
                                                r.choice(["crypto", "gift_cards", "entertainment"]),
                                                u["country"], r.choice(u["devices"]), 1))
                            tt += r.uniform(5_000, 300_000)
                    else:  # looks like the user: only a model of the future could tell
                        out.append(self._tx(u, t, math.exp(r.gauss(u["mu"], 0.6)),
                                            r.choice(u["merchants"]), r.choice(u["categories"]),
                                            u["country"], r.choice(u["devices"]), 1))
                t += r.expovariate(u["rate"] / DAY_MS)
        out.sort(key=lambda p: p[0]["timestamp"])
        return out


def dumps(tx):
    return json.dumps(tx, separators=(",", ":"))
