"""Node agents: consume fragments of one device pool, execute them, publish results, heartbeat.

Needs only Kafka (and AWS for ``aws-*`` pools), never Postgres.
"""
