"""Child-process entry point: run ``img2dataset.download(**kwargs)`` for one slice.

``python -m curation.downloading.img2dataset_child KWARGS.json``. It exists because a Dask worker cannot call
``img2dataset.download`` itself: tasks run in a worker *thread* (img2dataset installs a SIGINT
handler, which only the main thread may do) inside a *daemonic* process (img2dataset starts a
logger process and a process pool, which daemonic processes may not do). A fresh interpreter has
neither restriction, on a LocalCluster or on any remote cluster, with no worker configuration.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m curation.downloading.img2dataset_child KWARGS.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        kwargs = json.load(fh)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import img2dataset  # imported here: slow (~2 s), and only the child needs it

    img2dataset.download(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
