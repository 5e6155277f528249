"""The core every part shares; each folder says what lives there.

- ``contract/``: the event contract, settings, errors and privacy (what every part agrees on)
- ``figures/``: the room state machine and the exact figures of METRICS.md (KPIs, live state,
  the batch report)
- ``alerts/``: the alert rules (condition, threshold, severity, message) and their episodes
- ``kafka/``: the embedded broker, topics, clients and publishing
- ``history/``: the history store and imports into it
- ``planning/``: Erlang C / A and the control room's calendar, shared by forecasts and simulator
- ``simulation/``: the synthetic control room
"""
