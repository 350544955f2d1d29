"""Shard stage internals: flat detector, tile grid, planning, allocation, tar/parquet writing."""
