"""The HTTP analyze API: synchronous verdicts on the worker's engine, ahead of the backlog."""
