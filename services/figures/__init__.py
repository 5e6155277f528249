"""The room state machine and the exact figures of METRICS.md: one code for stream and batch."""

from services.figures._native import activate as _activate

# the mypyc build of the engine, if present and built from exactly these sources
NATIVE = _activate(__path__)
