"""Shared by forecasting and the simulator: Erlang C / A queueing, the calendar, bank holidays."""
