"""The core every part shares: settings, the event contract, metric definitions, ingest, broker."""

from services._native import activate as _activate

# the mypyc build of the engine, if present and built from exactly these sources
NATIVE = _activate(__path__)
