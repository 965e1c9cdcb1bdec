"""Job specs, planning, dispatch, aggregation, and the Postgres store."""
