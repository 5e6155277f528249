"""The command-line composition root: wires services, streams, forecasting and api together."""
