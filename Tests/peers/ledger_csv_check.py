"""Reads a `metergate ledger export` CSV with Python's csv module and checks every row independently:
times in UTC, kWh as exact decimals, and each amount re-priced from the tariff rules with zoneinfo and Decimal.

usage: ledger_csv_check.py CSV TIME_ZONE DEFAULT_PRICE [DAYS:FROM-TO=PRICE ...] [feed_in=PRICE]
feed_in=PRICE: the flat feed-in price exported energy earns (default 0); each export_amount is re-priced too.
Prints one JSON object: {"rows": N, "errors": [...], "amounts": [...], "total": "..."}.
"""
import csv
import json
import sys
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

HEADER = ["gateway", "meter", "epoch", "seq", "interval_start_utc", "interval_end_utc", "kwh", "export_kwh",
          "quality", "tariff", "currency", "price_per_kwh", "amount", "feed_in_price_per_kwh", "export_amount",
          "pricing_error"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def main():
    path, zone, default = sys.argv[1], ZoneInfo(sys.argv[2]), Decimal(sys.argv[3])
    periods = []
    feed_in = Decimal(0)
    for spec in sys.argv[4:]:
        if spec.startswith("feed_in="):
            feed_in = Decimal(spec.split("=", 1)[1])
            continue
        days, rest = spec.split(":")
        hours, price = rest.split("=")
        start, end = (int(h) for h in hours.split("-"))
        periods.append((set(days.split(",")), start, end, Decimal(price)))
    errors, amounts = [], []
    total = Decimal(0)
    with open(path, newline="") as f:
        reader = csv.reader(f, strict=True)
        header = next(reader)
        if header != HEADER:
            errors.append(f"header {header}")
        rows = list(reader)
    for n, row in enumerate(rows, start=2):
        r = dict(zip(HEADER, row))
        if len(row) != len(HEADER):
            errors.append(f"line {n}: {len(row)} fields")
            continue
        start = datetime.strptime(r["interval_start_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        end = datetime.strptime(r["interval_end_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if (end - start).total_seconds() != 900:
            errors.append(f"line {n}: interval {start}..{end}")
        local = start.astimezone(zone)
        day = DAYS[local.weekday()]
        price = next((p for (d, a, b, p) in periods if day in d and a <= local.hour < b), default)
        if Decimal(r["price_per_kwh"]) != price:
            errors.append(f"line {n}: price {r['price_per_kwh']} at local {local.isoformat()}, expected {price}")
        exact = Decimal(r["kwh"]) * price
        places = Decimal(1).scaleb(-len(r["price_per_kwh"].split(".")[1]) if "." in r["price_per_kwh"] else 0)
        expected = exact.quantize(places, rounding=ROUND_HALF_UP)
        if Decimal(r["amount"]) != expected:
            errors.append(f"line {n}: amount {r['amount']}, expected {expected}")
        if Decimal(r["feed_in_price_per_kwh"]) != feed_in:
            errors.append(f"line {n}: feed-in price {r['feed_in_price_per_kwh']}, expected {feed_in}")
        earned = (Decimal(r["export_kwh"]) * feed_in).quantize(places, rounding=ROUND_HALF_UP)
        if Decimal(r["export_amount"]) != earned:
            errors.append(f"line {n}: export amount {r['export_amount']}, expected {earned}")
        amounts.append(r["amount"])
        total += exact
    print(json.dumps({"rows": len(rows), "errors": errors, "amounts": amounts, "total": str(total)}))


main()
