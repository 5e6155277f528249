"""The Faust stream: topics, agents and timers that turn events into intervals, live state, alerts."""
