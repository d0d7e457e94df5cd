"""Values config/settings.py computes from what it read: database and broker options, the beat
schedule, cross-variable limits. Nothing here reads the environment."""
