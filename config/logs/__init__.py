"""Logs and metrics: JSON records to stdout, CloudWatch when a log group is set, secrets masked.

setup.py builds the LOGGING dict; formatter.py, redaction.py and events.py shape each record;
cloudwatch.py builds this process's CloudWatch handler from settings (handler.py, with its
batches.py, ledger.py and client.py); emf.py writes metrics as CloudWatch embedded-metric records.
"""
