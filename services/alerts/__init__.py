"""Alert rules (one object per rule) and the state machine of their episodes."""
