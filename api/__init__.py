"""The FastAPI read model: REST, server-sent events, Prometheus metrics and the dashboard."""
