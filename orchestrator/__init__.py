"""The orchestrator process: dispatch through the outbox, backpressure windows, applying
results, the training step engine and recovery. It shares work with other orchestrators
through ``SKIP LOCKED``; everything it knows is in Postgres."""
