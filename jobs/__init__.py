"""The job queue adapter: RQ's queues, their names and serializer, and the
functions that put caseline's jobs on them.

Jobs are named by dotted path, so neither the web side nor `routing` imports
the `workers` that run them.
"""
