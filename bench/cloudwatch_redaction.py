"""Cost of the redaction filter per log record, and of the whole stdout path around it.

    .venv/bin/python bench/cloudwatch_redaction.py [--records 20000]

Prints microseconds per record for typical records: a plain message, one with %-args and
context ids, one with nested extras, one carrying a card number and headers, one with a
traceback. The filter runs once per record (it marks what it has done), whatever the
number of handlers.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

from config.logs.formatter import JsonFormatter  # noqa: E402
from config.logs.redaction import RedactionFilter  # noqa: E402

try:
    raise ValueError("gateway said: card 4242424242424242 declined")
except ValueError:
    EXC_INFO = sys.exc_info()

CASES: dict[str, Callable[[], logging.LogRecord]] = {
    "plain": lambda: logging.makeLogRecord({"msg": "health check finished", "levelno": 20, "levelname": "INFO"}),
    "args+ids": lambda: logging.makeLogRecord({
        "msg": "gateway %s %s -> %s", "args": ("POST", "/v1/payment_intents", "timeout"),
        "levelno": 30, "levelname": "WARNING", "category": "payment_timeout", "payment_id": "pay_" + "a" * 24,
        "attempt": 2, "idempotency_key": "pay_" + "a" * 24 + "-create", "duration_ms": 10004}),
    "nested extra": lambda: logging.makeLogRecord({
        "msg": "payment created", "levelno": 20, "levelname": "INFO", "category": "payment_created",
        "payment": {"id": "pay_x", "amount": 1999, "currency": "eur", "metadata": {"order": "A-1001", "items": [1, 2]}}}),
    "secrets": lambda: logging.makeLogRecord({
        "msg": "charge failed for card 4242 4242 4242 4242 cvc=123 key sk_live_abcdef0123456789",
        "levelno": 40, "levelname": "ERROR",
        "headers": {"Authorization": "Bearer tok_abc", "Cookie": "sessionid=1", "Accept": "application/json"}}),
    "traceback": lambda: logging.makeLogRecord({
        "msg": "unexpected error", "levelno": 40, "levelname": "ERROR", "exc_info": EXC_INFO}),
}


def per_record_us(make: Callable[[], logging.LogRecord], work: Callable[[logging.LogRecord], object],
                  records: int, rounds: int = 5) -> float:
    """Best of `rounds` mean costs of `work` on fresh records, in microseconds (the least noisy
    estimate on a shared machine)."""
    results = []
    for _ in range(rounds):
        batch = [make() for _ in range(records)]
        started = time.perf_counter()
        for record in batch:
            work(record)
        results.append((time.perf_counter() - started) / records * 1e6)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()

    redaction = RedactionFilter()
    formatter = JsonFormatter()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    filtered = logging.StreamHandler(stream)
    filtered.setFormatter(formatter)
    filtered.addFilter(redaction)

    print(f"{'record':<14}{'filter µs':>11}{'json µs':>10}{'handler µs':>12}{'+filter µs':>12}")
    for name, make in CASES.items():
        filter_us = per_record_us(make, redaction.filter, args.records)
        format_us = per_record_us(make, formatter.format, args.records)
        plain_us = per_record_us(make, handler.handle, args.records)
        with_filter_us = per_record_us(make, filtered.handle, args.records)
        stream.seek(0)
        stream.truncate()
        print(f"{name:<14}{filter_us:>11.2f}{format_us:>10.2f}{plain_us:>12.2f}{with_filter_us:>12.2f}")


if __name__ == "__main__":
    main()
