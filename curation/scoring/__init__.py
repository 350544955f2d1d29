"""Score stage internals: the IQA metrics and the per-shard scoring task."""
