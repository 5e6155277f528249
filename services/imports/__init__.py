"""A force's own exports (CSV, JSONL) turned into contract events by a mapping file."""
