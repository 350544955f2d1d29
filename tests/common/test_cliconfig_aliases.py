"""One flag vocabulary: aliases keep old spellings working (hidden in --help), required flags are marked."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

import pytest

from common.cliconfig import build_parser, flag_of, parse_config


@dataclass
class _Cfg:
    raw: str = field(metadata={"positional": True, "aliases": ["--raw"], "help": "input folder"})
    out: str = field(metadata={"flag": "--out", "aliases": ["--output", "-o"], "help": "output folder"})
    num_workers: int = field(default=2, metadata={"flag": "--workers", "aliases": ["--num-workers"], "help": "workers"})
    tiny_model: bool = field(default=False, metadata={"flag": "--tiny", "aliases": ["--tiny-model"], "help": "tiny"})


def test_new_and_old_spellings_give_the_same_config():
    new = parse_config(_Cfg, ["r", "--out", "o", "--workers", "3", "--tiny"])
    old = parse_config(_Cfg, ["--raw", "r", "--output", "o", "--num-workers", "3", "--tiny-model"])
    short = parse_config(_Cfg, ["r", "-o", "o", "--workers", "3", "--tiny"])
    assert new == old == short == _Cfg(raw="r", out="o", num_workers=3, tiny_model=True)
    assert parse_config(_Cfg, ["r", "-o", "o", "--no-tiny-model"]).tiny_model is False


def test_help_lists_new_spellings_marks_required_and_hides_aliases():
    text = " ".join(build_parser(_Cfg).format_help().split())
    assert "--workers" in text and "--tiny" in text and "REQUIRED: output folder" in text
    assert "REQUIRED: input folder" in text
    assert "(old spelling --num-workers still accepted)" in text
    usage_and_options = text.split("old spelling")[0]
    assert "--num-workers NUM_WORKERS" not in text and "--tiny-model" not in usage_and_options
    assert "--workers WORKERS" in text


def test_missing_required_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        parse_config(_Cfg, ["r"])
    assert "--out" in capsys.readouterr().err


COMMANDS = sorted(set(__import__("pipeline.console", fromlist=["COMMANDS"]).COMMANDS.values()))  # every command
OLD = {"--num-workers", "--tiny-model", "--patch-size", "--output"}


def _configs():
    for name in COMMANDS:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if dataclasses.is_dataclass(obj) and isinstance(obj, type) \
                    and obj.__name__.endswith("Config") and "help" in str(dataclasses.fields(obj)[0].metadata):
                yield name, obj


def test_every_command_uses_the_one_vocabulary():
    seen = list(_configs())
    assert len({n for n, _ in seen}) >= 15
    for name, cls in seen:
        for f in dataclasses.fields(cls):
            assert flag_of(f) not in OLD, f"{name}: {flag_of(f)} is an old spelling; make it an alias"
            if f.name == "device":
                assert f.default == "auto", f"{name}: --device should default to auto"
