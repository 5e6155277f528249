"""The history store (SQLite or PostgreSQL) and imports of telephony exports into it."""
