"""Evaluation internals: the paper protocols, metrics, restorers, the results table."""
