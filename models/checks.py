"""The checks every network's settings go through, written once.

A setting is checked where the network is built, and a wrong one raises a
:class:`~models.errors.ConfigError` whose message names the layer (``where``), the setting
(``key``), what it must be, and the value given: ``convnet block 0: channels must be a positive
integer, got 0``.

Python's ``bool`` is an ``int`` (``True == 1``), but no setting here takes a bool for a number:
``channels: true`` is a slip, not one channel, so :func:`is_int` and :func:`is_number` refuse it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError

def is_int(v: Any) -> bool:
    """Whether ``v`` is an integer (a bool is not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """Whether ``v`` is a finite int or float (a bool is not; NaN and infinities are not)."""
    return is_int(v) or (isinstance(v, float) and math.isfinite(v))


def refuse(where: str, key: str, must: str, v: Any) -> ConfigError:
    """The error for a setting that is not what it must be: ``{where}: {key} must be {must}, got {v!r}``."""
    return ConfigError(f"{where}: {key} must be {must}, got {v!r}")


def check_int(where: str, key: str, v: Any, minimum: int = 1, *, must: str | None = None) -> int:
    """``v`` if it is an integer ``>= minimum``, else a :class:`ConfigError` naming ``where`` and ``key``
    (saying ``must`` is what it must be, by default ``an integer >= minimum``)."""
    if not is_int(v) or v < minimum:
        raise refuse(where, key, must or f"an integer >= {minimum}", v)
    return v


def check_positive_int(where: str, key: str, v: Any) -> int:
    """``v`` if it is an integer ``>= 1``; the error says ``a positive integer``."""
    return check_int(where, key, v, 1, must="a positive integer")


def check_number(where: str, key: str, v: Any, lo: float = 0.0, lo_open: bool = False,
                 hi: float | None = None, *, must: str | None = None) -> float:
    """``float(v)`` if it is a finite number in ``[lo, hi)`` (``(lo, hi)`` with ``lo_open``; no upper
    bound when ``hi`` is None), else a :class:`ConfigError` (``must`` rewords the range)."""
    if not (is_number(v) and (v > lo if lo_open else v >= lo) and (hi is None or v < hi)):
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and < {hi}" if hi is not None else "")
        raise refuse(where, key, must or f"a number {rng}", v)
    return float(v)


def check_bool(where: str, key: str, v: Any) -> bool:
    """``v`` if it is ``True`` or ``False`` (not 1, not ``"yes"``)."""
    if not isinstance(v, bool):
        raise refuse(where, key, "true or false", v)
    return v


def check_choice(where: str, key: str, v: Any, options: Iterable, *, message: str | None = None) -> Any:
    """``v`` if it is one of ``options``, else a :class:`ConfigError`: ``{where}: {key} must be one
    of a, b, got {v!r}``, or ``message`` formatted with ``where``, ``key``, ``value`` and
    ``options`` (the names joined by commas), for a network that words it its own way."""
    options = tuple(options)
    if v not in options:  # a tuple, so an unhashable value (a list) is refused, not a TypeError
        listed = ", ".join(map(str, options))
        if message is None:
            raise refuse(where, key, f"one of {listed}", v)
        raise ConfigError(message.format(where=where, key=key, value=v, options=listed))
    return v
