"""No setting is silently ignored: the settings of a run that its method, task or model
does not use are refused when the user chose them, and left out of the run identity when
a default the user did not choose set them.

What a method leaves unused it says itself (:meth:`spikezip.methods.Method.unused_settings`);
the rules of the loss are here. What the user chose comes from the command line
(:func:`spikezip.config.hydra.chosen_settings`): a ``key=value`` override, or the keys a
group option named there sets itself (``variant=pr`` sets ``pet.levels``). Built in
Python, without Hydra, a setting counts as chosen when it differs from the schema's
default.
"""

from __future__ import annotations

from spikezip.config.build import to_plain
from spikezip.config.schema import TrainConfig
from spikezip.methods import METHODS, method_of, method_settings
from spikezip.pet.config import Label
from spikezip.settings import ConfigError, Unused


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def unused_settings(cfg: TrainConfig) -> list[Unused]:
    """Every setting of ``cfg`` that the run will not use, with why."""
    method = method_of(cfg.method.name)
    unused = method.unused_settings(cfg.pet, cfg.method)
    for key in method_settings():
        if key not in method.settings:
            owners = ", ".join(f"method={m.name}" for m in METHODS.values() if key in m.settings)
            why = f"method={method.name} does not read it (a setting of {owners})"
            unused.append(Unused(f"method.{key}", why))
    sub_paths = all(u.key != "pet.sub_label" for u in unused)
    labels = [cfg.pet.main_label] + ([cfg.pet.sub_label] if sub_paths else [])
    if all(label is Label.hard for label in labels):
        why = "no loss term is distilled from the teacher (every label is hard)"
        unused.append(Unused("pet.temperature", why))
    return unused


def _covers(key: str, chosen: str) -> bool:
    """Whether choosing ``chosen`` sets ``key``, or part of it (``pet`` sets ``pet.alpha``)."""
    return key == chosen or key.startswith(f"{chosen}.") or chosen.startswith(f"{key}.")


def refuse_unused(cfg: TrainConfig, chosen: dict[str, str] | None) -> None:
    """Refuse a run whose user chose a setting it would not use.

    Args:
        chosen: ``{dotted key: what set it}`` from the command line
            (:func:`spikezip.config.hydra.chosen_settings`); None: the config was built
            without Hydra, and any setting off its default counts as chosen.

    Raises:
        ConfigError: naming each such setting, what set it, and why it is not used.
    """
    values = flatten(to_plain(cfg))
    if chosen is None:  # without Hydra: what differs from the schema's defaults
        default = flatten(to_plain(TrainConfig()))
        chosen = {k: "the config given" for k, v in values.items() if default.get(k) != v}
    refused = []
    for unused in unused_settings(cfg):
        setters = sorted({by for key, by in chosen.items() if _covers(unused.key, key)})
        if setters:
            value = values.get(unused.key)
            refused.append(f"{unused.key}={value} (from {', '.join(setters)}): {unused.reason}")
    if refused:
        raise ConfigError(
            "this run would not use settings it was given: "
            + "; ".join(refused)
            + ". Leave them out, or change what makes them unused."
        )
