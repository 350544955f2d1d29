"""The one threshold type of the curation: ``niqe=6,brisque=45,nima=4.5``.

Used by ``curation.filter`` (decides), ``curation.report`` (draws) and the demo (restricts to the
scored metrics). The user gives only values; each metric's direction (keep ``<=`` for lower-is-better
NIQE / BRISQUE, ``>=`` for higher-is-better NIMA) comes from the metric table in
:mod:`curation.layout`, never from the user.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from curation.layout import METRIC_TABLE, METRICS


@dataclass(frozen=True)
class Thresholds:
    """Metric limits in metric-table order; immutable, printable back to the flag syntax."""

    limits: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, values: Mapping[str, float]) -> Thresholds:
        unknown = sorted(set(values) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown} in thresholds; known: {', '.join(METRICS)}")
        for name, value in values.items():
            if not math.isfinite(float(value)):
                raise ValueError(f"threshold {name}={value} is not a finite number")
        return cls(tuple((m.name, float(values[m.name])) for m in METRIC_TABLE if m.name in values))

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """``"niqe=6, brisque=45"`` → Thresholds; a clear ``ValueError`` for anything else."""
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in METRICS:
                raise ValueError(f"bad threshold {part!r}: expected METRIC=VALUE with METRIC in {', '.join(METRICS)}")
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"bad threshold value in {part!r}") from None
            if not math.isfinite(values[name]):
                raise ValueError(f"threshold {part!r} is not a finite number")
        if not values:
            raise ValueError("no thresholds given")
        return cls.of(values)

    @classmethod
    def defaults(cls, metrics: Iterable[str] | None = None) -> Thresholds:
        """The documented defaults (metric table), for ``metrics`` or for every metric."""
        wanted = set(METRICS if metrics is None else metrics)
        return cls.of({m.name: m.default_threshold for m in METRIC_TABLE if m.name in wanted})

    def as_dict(self) -> dict[str, float]:
        return dict(self.limits)

    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.limits)

    def only(self, metrics: Iterable[str]) -> Thresholds:
        """The same limits restricted to ``metrics`` (e.g. those that were scored)."""
        keep = set(metrics)
        return Thresholds(tuple((n, v) for n, v in self.limits if n in keep))

    def directions(self) -> dict[str, str]:
        return {n: METRICS[n].keep_op for n in self.names()}

    def reasons(self, row: Mapping[str, object]) -> list[str]:
        """Why ``row``'s scores fail (``niqe>6``, ``nima<4.5``, ``brisque:nan``); empty: all pass."""
        out = []
        for name, limit in self.limits:
            value = row.get(name)
            if value is None or not math.isfinite(float(value)):  # type: ignore[arg-type]
                out.append(f"{name}:nan")
            elif METRICS[name].lower_better and value > limit:  # type: ignore[operator]
                out.append(f"{name}>{limit:g}")
            elif not METRICS[name].lower_better and value < limit:  # type: ignore[operator]
                out.append(f"{name}<{limit:g}")
        return out

    def __str__(self) -> str:
        return ",".join(f"{n}={v:g}" for n, v in self.limits)

    def describe(self) -> str:
        """``niqe<=6, nima>=4.5``: the limits with their directions, for logs."""
        return ", ".join(f"{n}{METRICS[n].keep_op}{v:g}" for n, v in self.limits)


DEFAULT_THRESHOLDS = Thresholds.defaults()
