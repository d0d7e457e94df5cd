"""CloudWatch Logs handler through watchtower; never fatal."""

from __future__ import annotations

import logging
import os
import socket

from django.conf import settings

logger = logging.getLogger(__name__)


def make_handler() -> logging.Handler:
    try:
        import boto3
        import watchtower
        from botocore.config import Config

        timeout = settings.CLOUDWATCH_TIMEOUT
        client = boto3.client(
            "logs",
            region_name=settings.AWS_REGION,
            endpoint_url=settings.AWS_ENDPOINT_URL,
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard"}),
        )
        stream = f"{socket.gethostname()}/{settings.PROCESS_ROLE}/{os.getpid()}"
        return watchtower.CloudWatchLogHandler(
            log_group_name=settings.CLOUDWATCH_LOG_GROUP,
            log_stream_name=stream,
            boto3_client=client,
            create_log_group=True,
        )
    except Exception as exc:  # logging must never take the service down
        logger.warning("CloudWatch handler unavailable: %s", exc.__class__.__name__,
                       extra={"category": "cloudwatch_unavailable"})
        return logging.NullHandler()
