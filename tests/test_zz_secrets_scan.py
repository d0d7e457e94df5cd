"""Runs last (by name): nothing sensitive in the database or in anything the suite logged.

The suite sends card-number-like strings, CVV fields, secret keys and Authorization headers
on purpose (bad-input, redaction and fuzz tests); none of them may have been kept.
"""

from __future__ import annotations

import subprocess

import pytest
from django.db import connection

from tests.logs.scan import find_secrets
from tests.payments.factories import ISSUED_KEYS
from tests.support.processes import LOG_FILES


def _dump_database() -> str:
    db = connection.settings_dict
    result = subprocess.run(
        ["pg_dump", "--data-only", "-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"], db["NAME"]],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_database_holds_no_card_data_secrets_or_raw_api_keys(gateway) -> None:
    from tests.payments.factories import Api, make_client

    # Make sure there is something to find if storage were careless.
    _, key = make_client()
    api = Api(key)
    assert api.pay(reference="order 4000 0566 5566 5556").status_code == 400  # card number
    assert api.pay(metadata={"note": "sk_live_" + "a1B2c3D4e5F6g7H8"}).status_code == 400  # secret key
    assert api.pay().status_code == 201
    dump = _dump_database()
    assert ISSUED_KEYS and [raw for raw in ISSUED_KEYS if raw in dump] == []
    assert find_secrets(dump) == []


def test_logs_of_the_whole_suite_hold_no_secrets() -> None:
    assert LOG_FILES, "no log was captured"
    for path in LOG_FILES:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        assert find_secrets(text) == [], f"{path}: {find_secrets(text)[:5]}"
        leaked = [raw for raw in ISSUED_KEYS if raw in text]
        assert leaked == [], f"{path} contains an API key"
