"""The Postgres store: ORM models, engine/session handling, repository functions, migrations."""
