"""The pipeline worker: one long-running process per container, one step's queue."""
