"""Writes of the health app, one module a noun: publishing (pool statistics), runs, alerts,
the dead-man's switch, breaker alerts and notifications."""
