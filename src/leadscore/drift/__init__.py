"""Drift: the model's inputs in production against the reference bins its bundle keeps from training."""
