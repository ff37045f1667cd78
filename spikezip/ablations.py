"""The ablation study's plan, read from ``ablations.yaml`` beside this file: its settings
(the options of the config group ``ablation``), the paper's panels that show them, the
claims the study checks and the rows of Table 3 (:mod:`spikezip.table3`). The one place
each setting is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PLAN = Path(__file__).with_name("ablations.yaml")


@dataclass(frozen=True)
class Panel:
    """One figure or table of the paper: its rows are settings (``ablation`` options)."""

    key: str
    title: str
    rows: tuple[tuple[str, str], ...]  # (label, ablation)
    figure: bool = False


@dataclass(frozen=True)
class Check:
    """The paper expects ``higher``'s ``measure`` above ``lower``'s (``relation`` ``above``),
    or at least not below it (``not_below``: a cost the paper says is none)."""

    higher: str
    lower: str
    measure: str
    relation: str = "above"

    def __post_init__(self):
        if self.relation not in ("above", "not_below"):
            raise ValueError(f"a check's relation is above or not_below, not {self.relation!r}")


@dataclass(frozen=True)
class Claim:
    panel: str
    text: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Row:
    """A row of Table 3: a setting, and whether it needs a ResNet (residual re-routing)."""

    label: str
    setting: str
    residual: bool = False


def _read(path: Path):
    plan = yaml.safe_load(path.read_text())
    settings = {str(name): node for name, node in plan["settings"].items()}
    panels = tuple(
        Panel(p["key"], p["title"], tuple((str(a), str(b)) for a, b in p["rows"]), p["figure"])
        for p in ({"figure": False, **p} for p in plan["panels"])
    )
    claims = tuple(
        Claim(c["panel"], c["text"], tuple(Check(*map(str, check)) for check in c["checks"]))
        for c in plan["claims"]
    )
    table3 = tuple(Row(str(label), str(a), bool(r)) for label, a, r in plan["table3"])
    named = {a for p in panels for _, a in p.rows} | {row.setting for row in table3}
    named |= {x for c in claims for check in c.checks for x in (check.higher, check.lower)}
    if named != set(settings):
        raise ValueError(
            f"{path}: the panels, claims and Table 3 name {sorted(named - set(settings))}, "
            f"which are no setting, and none names {sorted(set(settings) - named)}"
        )
    return settings, panels, claims, table3


SETTINGS, PANELS, CLAIMS, TABLE3 = _read(PLAN)
