"""Analyses of data and results: what a run's figures mean for a decision (no Qt, little torch)."""
