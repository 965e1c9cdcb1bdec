"""Job kinds: their request schemas, validation and the one registry of per-kind behaviour."""
