"""The core every part shares: settings, the event contract, metric definitions, ingest, broker."""
