"""Benchmarks: a load generator of virtual Twilio callers, the framework's
ceiling, and the runner behind `make bench` (see docs/benchmarks.md)."""
