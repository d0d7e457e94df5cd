from __future__ import annotations

from django.db import models

from bench.fleet.baseline.table import RECORDED_TABLE, TABLE


class Charge(models.Model):
    gateway_id = models.CharField(max_length=64)
    amount = models.IntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        managed = False  # bench/fleet/baseline/table.py
        db_table = TABLE


class RecordedCharge(models.Model):
    """The Django floor's payment: INSERTed under its Idempotency-Key before the call."""

    idempotency_key = models.CharField(max_length=255, unique=True)
    gateway_id = models.CharField(max_length=64, null=True)
    amount = models.IntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        managed = False  # bench/fleet/baseline/table.py
        db_table = RECORDED_TABLE
