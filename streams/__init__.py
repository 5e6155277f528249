"""The Faust stream: agents and timers that turn events into intervals, live state and alerts."""
