"""The synthetic control room: deterministic events for demos, tests and benchmarks."""
