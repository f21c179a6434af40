"""Experiments built on the core (why it works, ensembles, compression & energy): event streams like the engine."""
