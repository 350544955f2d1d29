"""Every command in docs/reproduce-table1.md parses against its command's config (flags exist as spelt)."""

from __future__ import annotations

import re
import shlex

import pytest

from common.cliconfig import parse_config
from training.evaluate import EvalConfig
from training.finetune import FinetuneConfig
from training.make_lists import MakeListsConfig
from training.params import PretrainConfig
from training.prepare_data import PrepareConfig
from training.train_dsrir import TrainDSRIRConfig

CONFIGS = {"training.prepare_data": PrepareConfig, "training.pretrain": PretrainConfig,
           "training.finetune": FinetuneConfig, "training.evaluate": EvalConfig,
           "training.make_lists": MakeListsConfig, "training.train_dsrir": TrainDSRIRConfig}


def _commands(text: str) -> list[list[str]]:
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                cmds.append(shlex.split(line))
    return cmds


def test_every_command_parses(repo_root):
    cmds = _commands((repo_root / "docs" / "reproduce-table1.md").read_text())
    modules = []
    for argv in cmds:
        i = argv.index("-m")
        module, args = argv[i + 1], argv[i + 2:]
        cfg = parse_config(CONFIGS[module], args)
        modules.append(module)
        if module == "training.finetune":  # the documented defaults are the official recipe
            assert (cfg.variant, cfg.task_mix, cfg.amp) == ("l", "official", "none")
    assert len(cmds) >= 15 and set(modules) == set(CONFIGS)


@pytest.mark.parametrize("module", ["training.prepare_data", "training.finetune", "training.evaluate",
                                    "training.train_dsrir"])
def test_help_lists_the_new_flags(module, capsys):
    with pytest.raises(SystemExit):
        parse_config(CONFIGS[module], ["--help"])
    out = capsys.readouterr().out
    want = {"training.prepare_data": "--link", "training.finetune": "--task-mix", "training.evaluate": "--benchmark",
            "training.train_dsrir": "--val-dir"}[module]
    assert want in out
