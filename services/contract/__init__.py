"""The contract every part agrees on: events, settings, errors, privacy."""
