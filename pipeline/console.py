"""Console entry points (``[project.scripts]`` in pyproject.toml): one ``dynet-…`` command per entry point.

Each command runs the module's ``main()`` exactly as ``python -m MODULE`` does. Why a wrapper instead of
pointing the script at ``MODULE:main``: setuptools' generated script does ``sys.exit(main())``, and
several ``main``s return a summary dict (ingest, shard, restore ...), which ``sys.exit`` would print and
turn into exit status 1. Here an ``int`` return is the exit status and anything else means success,
the same as ``python -m``. Modules are imported only when their command runs (fast ``--help``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# console script name -> module whose main() it runs (the same list is in pyproject.toml's [project.scripts])
COMMANDS: dict[str, str] = {
    "dynet-download": "curation.download",
    "dynet-ingest": "curation.ingest",
    "dynet-weights": "curation.weights",
    "dynet-score": "curation.score",
    "dynet-filter": "curation.filter",
    "dynet-shard": "curation.shard",
    "dynet-query": "curation.query",
    "dynet-report": "curation.report",
    "dynet-curate": "curation.run",
    "dynet-flatviz": "curation.flatviz",
    "dynet-pretrain": "training.pretrain",
    "dynet-finetune": "training.finetune",
    "dynet-evaluate": "training.evaluate",
    "dynet-train-dsrir": "training.train_dsrir",
    "dynet-make-lists": "training.make_lists",
    "dynet-epoch-chg": "training.epoch_chg",
    "dynet-vgg-weights": "training.vgg_weights",
    "dynet-prepare-data": "training.prepare_data",
    "dynet-restore": "dynet_model.restore",
    "dynet-profile": "dynet_model.profile",
    "dynet-demo": "pipeline.demo",
}


def run_main(module: str, argv: list[str] | None = None) -> int:
    """Import ``module``, call its ``main(argv)``; the exit status as ``python -m`` would give it."""
    result = importlib.import_module(module).main(argv)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _command(module: str) -> Callable[[], None]:
    def entry() -> None:
        sys.exit(run_main(module))

    entry.__doc__ = f"``python -m {module}`` as a console command."
    entry.__name__ = module.rsplit(".", 1)[1]
    return entry


download = _command("curation.download")
ingest = _command("curation.ingest")
weights = _command("curation.weights")
score = _command("curation.score")
filter = _command("curation.filter")
shard = _command("curation.shard")
query = _command("curation.query")
report = _command("curation.report")
curate = _command("curation.run")
flatviz = _command("curation.flatviz")
pretrain = _command("training.pretrain")
finetune = _command("training.finetune")
evaluate = _command("training.evaluate")
train_dsrir = _command("training.train_dsrir")
make_lists = _command("training.make_lists")
epoch_chg = _command("training.epoch_chg")
vgg_weights = _command("training.vgg_weights")
prepare_data = _command("training.prepare_data")
restore = _command("dynet_model.restore")
profile = _command("dynet_model.profile")
demo = _command("pipeline.demo")
