"""Background jobs: call logs, wrap-up ends, the reconciler."""
