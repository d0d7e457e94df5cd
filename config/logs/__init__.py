"""Logs and metrics: JSON records to stdout, CloudWatch when a log group is set, secrets masked.

setup.py builds the LOGGING dict; formatter.py, redaction.py and events.py shape each record;
cloudwatch.py builds the CloudWatch handler from settings (handler.py, batches.py, client.py);
emf.py writes metrics as CloudWatch embedded-metric records.
"""
