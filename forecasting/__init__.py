"""Forecasts of demand (Prophet and baselines) and staffing plans (Erlang C / A)."""
