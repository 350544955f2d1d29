"""Entry-point plumbing shared by every command: dataclass config <-> argparse <-> YAML (atomic writes live in :mod:`common.atomic`).

Each command defines a ``@dataclass`` config whose fields carry ``metadata={"help": ...}``;
:func:`parse_config` turns it into an argparse parser where ``--config x.yaml`` supplies defaults
and explicit flags win. :func:`save_config` writes the resolved config beside the outputs.

Supported field types: ``int``, ``float``, ``str``, ``bool`` (``--flag`` / ``--no-flag``),
``X | None``, ``list[X]`` / ``tuple[X, ...]`` (``nargs``). ``metadata={"positional": True}`` makes a
positional argument (``nargs="+"`` for list fields).

One flag vocabulary across commands without breaking old command lines: ``metadata={"flag": "--workers"}``
sets the spelling of a field whose name differs (the YAML key stays the field name), and
``metadata={"aliases": ["--num-workers"]}`` keeps old spellings working, hidden from ``--help`` (the
main flag's help names them). A positional field with aliases may be given either way
(``score RAW`` or ``score --raw RAW``). Fields without a default are marked ``REQUIRED`` in ``--help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from common.atomic import atomic_write_text

T = TypeVar("T")


def _unwrap(tp: Any) -> tuple[Any, bool, bool]:
    """(element type, is_sequence, is_optional) of a field annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence, typing.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return (args[0] if args else str), True, optional
    return tp, False, optional


def build_parser(cls: type, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or cls.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="YAML file whose keys give defaults for any flag below; flags on the command line win")
    hints = typing.get_type_hints(cls)
    defaults = _defaults(cls)
    for f in dataclasses.fields(cls):
        elem, seq, _ = _unwrap(hints[f.name])
        help_text = f.metadata.get("help", "")
        aliases = list(f.metadata.get("aliases", []))
        if f.name in defaults and "default" not in help_text.lower():
            shown = defaults[f.name]
            if isinstance(shown, (list, tuple)):
                shown = " ".join(str(v) for v in shown) or "none"
            help_text = f"{help_text} (default: {str(shown).replace('%', '%%')})"
        elif f.name not in defaults and not help_text.startswith("REQUIRED"):
            help_text = f"REQUIRED: {help_text}"
        if aliases:
            help_text = f"{help_text} (old spelling{'s' if len(aliases) > 1 else ''} {', '.join(aliases)} still accepted)"
        if f.metadata.get("positional"):
            nargs = ("*" if seq else "?") if aliases else ("+" if seq else None)
            extra = {"default": argparse.SUPPRESS} if aliases else {}
            parser.add_argument(f.name, type=elem, nargs=nargs, help=help_text, **extra)
            for alias in aliases:  # the same value as a flag: `score --raw RAW` as well as `score RAW`
                parser.add_argument(alias, dest=f.name, type=elem, nargs="+" if seq else None,
                                    default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            continue
        for i, spelling in enumerate([flag_of(f), *aliases]):
            shown_help = help_text if i == 0 else argparse.SUPPRESS  # aliases: accepted, not listed
            if elem is bool and not seq:
                parser.add_argument(spelling, dest=f.name, action=argparse.BooleanOptionalAction,
                                    default=argparse.SUPPRESS, help=shown_help)
            else:
                parser.add_argument(spelling, dest=f.name, type=elem, nargs="+" if seq else None,
                                    default=argparse.SUPPRESS, help=shown_help,
                                    metavar=flag_of(f).lstrip("-").upper().replace("-", "_"))
    return parser


def flag_of(f: dataclasses.Field) -> str:
    """The command-line spelling of a field: ``metadata["flag"]``, else ``--field-name``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _defaults(cls: type) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str = "") -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls`` (YAML defaults < CLI)."""
    parser = build_parser(cls, description)
    ns = vars(parser.parse_args(argv))
    values = _defaults(cls)
    config_path = ns.pop("config", None)
    if config_path:
        loaded = yaml.safe_load(Path(config_path).read_text()) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(loaded) - names)
        if unknown:
            parser.error(f"{config_path}: unknown keys {unknown}")
        values.update(loaded)
    values.update({k: v for k, v in ns.items() if v is not None or k not in values})
    missing = [f for f in dataclasses.fields(cls) if f.name not in values]
    if missing:
        parser.error(f"missing required option(s): {', '.join(flag_of(f) for f in missing)}")
    hints = typing.get_type_hints(cls)
    for name, tp in hints.items():  # YAML lists -> tuples where the field is a tuple
        if typing.get_origin(_strip_optional(tp)) is tuple and isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return cls(**values)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def config_to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically) so a run can be repeated with ``--config``."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
