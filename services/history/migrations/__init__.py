"""Alembic migrations of the history store (``pacesetter db upgrade`` applies them)."""
