"""Outcomes: what became of scored leads (conversions, stages), recorded in the lake beside the predictions."""
