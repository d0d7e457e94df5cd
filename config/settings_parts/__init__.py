"""What config/settings.py computes from the values it read; nothing here reads the environment.

web.py: apps, middleware, templates, static files. database.py: the pooled database.
broker.py and beat.py: the Celery broker's options and beat's schedule. gateway.py, alerts.py
and logs.py: limits between values that only hold together, refused at start-up.
"""
