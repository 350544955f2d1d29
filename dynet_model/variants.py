"""Named DyNet variants = reuse-frequency vectors over one set of weights."""

from __future__ import annotations

from .config import DYNET_L, DYNET_S

NAMED = {"s": DYNET_S, "dynet-s": DYNET_S, "small": DYNET_S,
         "l": DYNET_L, "dynet-l": DYNET_L, "large": DYNET_L}


def parse_reuse(spec: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``"s"`` / ``"dynet-s"`` -> (2,3,3,4); ``"l"`` / ``"dynet-l"`` -> (4,6,6,8); ``"2,3,3,4"`` -> as given.

    Any vector of 4 integers >= 1 is valid: every level's shared block is applied that many times.
    """
    if isinstance(spec, (tuple, list)):
        values = tuple(int(v) for v in spec)
    else:
        key = spec.strip().lower()
        if key in NAMED:
            return NAMED[key]
        try:
            values = tuple(int(v) for v in key.replace(" ", "").split(",") if v != "")
        except ValueError:
            raise ValueError(f"reuse spec {spec!r} is neither a variant name ({', '.join(sorted(NAMED))}) "
                             "nor a comma-separated list of 4 integers like 2,3,3,4") from None
    if len(values) != 4 or min(values) < 1:
        raise ValueError(f"reuse vector needs 4 integers >= 1, got {values}")
    return values
