"""What every process of both services runs, whichever service it is: settings loading, JSON
logs with request ids, Prometheus metrics, health endpoints and optional tracing.

Both the MFA service and the notifier import it; it imports neither.
"""
