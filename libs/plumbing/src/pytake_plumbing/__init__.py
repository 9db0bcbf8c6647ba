"""Plumbing every PyTake service shares: settings, Kafka, databases, logs, traces."""
