"""Environment-aware load and smoke tests of a running service: full load in dev, a conservative smoke in prod."""
