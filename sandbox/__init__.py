"""Gateway peer for dev and tests: localstripe on loopback plus an idempotency and
fault-injection proxy. See sandbox/README.md; run `python -m sandbox --help`."""
