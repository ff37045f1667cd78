"""The checks every settings dataclass runs in ``__post_init__``.

Each raises :class:`SettingError` whose message starts with the field's name
(``alpha must be >= 0, got -1``); :func:`spikezip.config.validate` prefixes the path of
the config node (``pet.alpha must be ...``), so one check serves the Python API and every
entry point's config alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from spikezip.errors import SpikeZIPError

E = TypeVar("E", bound=Enum)


class Choice(str, Enum):
    """A closed set of string options: a config schema rejects any other value at
    composition; members compare equal to, and print as, their value."""

    def __str__(self) -> str:
        return self.value


class SettingError(SpikeZIPError, ValueError):
    """A setting out of range; the message starts with the setting's name."""


@dataclass(frozen=True)
class Unused:
    """A setting of ``train.py`` that a run's method, task or model does not use.

    ``key``: its dotted name (``pet.alpha``); ``reason``: why it is not used; ``kept``:
    the part of it that is used, recorded in the run identity in its place (``pet.levels``
    of a one-path method: its first level), or None when nothing of it is.
    """

    key: str
    reason: str
    kept: object = None


def choice(name: str, value, options: type[E]) -> E:
    """``value`` as a member of the enum ``options``, or a SettingError listing them."""
    try:
        return options(value)
    except ValueError:
        allowed = [o.value for o in options]
        raise SettingError(f"{name}={value!r} is not valid; choose one of {allowed}") from None


def positive(name: str, value, *, zero: bool = False, none: bool = False) -> None:
    """``value > 0`` (``>= 0`` with ``zero``; None passes with ``none``)."""
    if value is None and none:
        return
    if value is None or isinstance(value, bool) or not (value >= 0 if zero else value > 0):
        raise SettingError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")


class ConfigError(SettingError):
    """A configuration value that is wrong; the message names the full key."""
