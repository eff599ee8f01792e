"""``gpupipe``: submit media to a deployed pipeline, watch its jobs, fetch their results."""
