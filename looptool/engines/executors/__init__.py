"""Executors that run a backend as replicas: local processes (replicas) or a Ray cluster."""
