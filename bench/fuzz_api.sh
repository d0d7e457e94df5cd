#!/usr/bin/env bash
# The long fuzz run of the payment API from its own OpenAPI document (the suite runs 40
# cases per operation). Usage: bench/fuzz_api.sh [cases per operation, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh payops
FUZZ_EXAMPLES="${1:-1000}" .venv/bin/python -m pytest tests/payments/test_fuzz.py -q -p no:cacheprovider
