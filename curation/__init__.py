"""Million-IRD style curation: download, ingest, score (NIQE/BRISQUE/NIMA), filter, shard, query, report."""
