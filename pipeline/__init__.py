"""Orchestration on top of every package: the end-to-end demo (curation stages, then training)."""
