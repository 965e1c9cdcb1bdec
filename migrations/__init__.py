"""Alembic environment and versions: the only way qorchestra's schema changes."""
