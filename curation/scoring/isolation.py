"""Failure isolation: a shard whose task kills its worker is rescored in halves until the culprit is alone.

When a shard task fails after its retries (typically ``KilledWorker``: one huge or hostile image pushes the
worker over its memory limit every time), the other images of the shard must not lose their scores. The
shard's images are split into halves, each half scored as its own task (``score_keys``, no retries); a
half that succeeds contributes its results, a half that fails is split again, and a single image that
still fails is the culprit: it alone gets ``failed_oom`` (its worker died) or ``metric_error`` (another
exception), with the reason. Bisection costs O(log n) passes over the shard's tar instead of one per
image. The score file is then written by one more task, so files are touched only by workers.
"""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
from dask.distributed import Client, as_completed
from distributed import KilledWorker

from curation.rawshards import shard_paths
from curation.scoring.shard_task import (
    ScoreSettings,
    ShardResult,
    score_keys,
    write_scores,
)

_LOG = logging.getLogger(__name__)


def _culprit(key: str, exc: BaseException) -> dict:
    if isinstance(exc, KilledWorker):
        return {"status": "failed_oom", "sha256_bytes": None,
                "error": f"the worker process died scoring this image alone, most likely out of memory ({str(exc)[:200]})"}
    return {"status": "metric_error", "sha256_bytes": None, "error": f"{type(exc).__name__}: {exc}"[:500]}


def isolate_shard(client: Client, raw_dir: str, out_dir: str, shard_id: str, settings: ScoreSettings,
                  cause: BaseException, resources: dict[str, float] | None = None) -> ShardResult:
    """Rescore a failed shard by bisection and write its score file; only culprit images get a failure status."""
    raw_rows = pq.read_table(shard_paths(raw_dir, shard_id)[1]).to_pylist()
    keys = [str(r.get("key")) for r in raw_rows if r.get("status") == "success"]
    _LOG.warning("shard %s failed (%s: %s); rescoring its %d image(s) in halves to isolate the culprit",
                 shard_id, type(cause).__name__, str(cause)[:200], len(keys))
    results: dict[str, dict] = {}
    culprits: list[str] = []

    def submit(chunk: list[str]):
        return client.submit(score_keys, raw_dir, shard_id, chunk, settings, retries=0, pure=False,
                             resources=resources)

    chunks = [keys[: len(keys) // 2], keys[len(keys) // 2:]] if len(keys) > 1 else [keys]
    pending = {submit(c): c for c in chunks if c}
    suspects: list[str] = []
    queue = as_completed(list(pending))
    for fut in queue:
        chunk = pending.pop(fut)
        try:
            results.update(fut.result())
        except Exception:  # this chunk kills its worker (or raises): split it, or hold the image as a suspect
            if len(chunk) == 1:
                suspects.append(chunk[0])
                continue
            for half in (chunk[: len(chunk) // 2], chunk[len(chunk) // 2:]):
                new = submit(half)
                pending[new] = half
                queue.add(new)
    # A worker that dies fails every task it held, so an innocent image can fail beside the culprit:
    # each suspect is confirmed alone, one at a time, before it is blamed.
    for key in suspects:
        try:
            results.update(submit([key]).result())
        except Exception as exc:
            results[key] = _culprit(key, exc)
            culprits.append(key)
    res = client.submit(write_scores, raw_dir, out_dir, shard_id, settings, results, pure=False,
                        resources=resources).result()
    _LOG.warning("shard %s written after isolation; culprit image(s): %s", shard_id, ", ".join(culprits) or "none")
    return res
