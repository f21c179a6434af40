"""The run service: background tasks, the run manager (queue, workers) and the on-disk run store."""
