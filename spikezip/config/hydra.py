"""What SpikeZIP tells Hydra: the schemas, the resolvers, and the ``.hydra`` files of a run
that accepted its settings."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spikezip.ablations import SETTINGS
from spikezip.config.schema import SCHEMAS
from spikezip.config.usage import flatten
from spikezip.io import atomic_write
from spikezip.methods import paper_default


def record_hydra_run(run_dir: str | Path, cfg: DictConfig) -> None:
    """Write ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra would,
    when running under Hydra. ``train.yaml`` sets ``hydra.output_subdir: null`` and the
    pipeline calls this once the run directory accepted the settings, so a refused rerun
    leaves the files of the run it belongs to as they were."""
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": OmegaConf.to_container(hydra)}),
        "overrides.yaml": OmegaConf.create(list(hydra.overrides.task)),
    }
    for name, node in files.items():
        atomic_write(
            Path(run_dir) / ".hydra" / name, lambda tmp, node=node: OmegaConf.save(node, tmp)
        )


def chosen_settings() -> dict[str, str] | None:
    """The settings the user chose on the command line, as ``{dotted key: the override
    that set it}``: each ``key=value``, and for each ``group=option`` the keys that option
    sets itself (not those of the options its own defaults list pulls in: a paper row's
    ``experiment`` picks a variant for SpikeZIP, not for the method the user compares).
    None when not running under Hydra."""
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return None
    overrides = list(HydraConfig.get().overrides.task)
    repository = GlobalHydra.instance().config_loader().repository
    chosen = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key, text = override.key_or_group, override.input_line
        if key.startswith("hydra") or override.is_delete():
            continue
        value = override.value()
        if repository.group_exists(key) and isinstance(value, str):
            loaded = repository.load_config(f"{key}/{value}")
            if loaded is None:
                continue
            package = loaded.header.get("package")
            prefix = "" if package == "_global_" else f"{package or key}."
            tree = OmegaConf.to_container(loaded.config, resolve=False)
            tree = {k: v for k, v in tree.items() if k not in ("defaults", "hydra")}
            chosen.update(dict.fromkeys(flatten(tree, prefix), text))
        else:
            chosen[key] = text
    return chosen


def register_configs() -> None:
    """Register the schemas so Hydra type-checks every composed config against them, and
    the study's settings as the options of the group ``ablation``
    (:mod:`spikezip.ablations`)."""
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
    for name, node in SETTINGS.items():
        store.store(group="ablation", name=name, node=node, package="_global_")
    if not OmegaConf.has_resolver("spikezip.sweep_teachers"):
        OmegaConf.register_new_resolver("spikezip.sweep_teachers", _sweep_teachers)
    if not OmegaConf.has_resolver("spikezip.paper"):  # conf/method/<name>.yaml
        OmegaConf.register_new_resolver("spikezip.paper", paper_default)


def _sweep_teachers() -> str | None:
    """``<sweep dir>/teachers`` in a Hydra multirun (its jobs share identical teachers),
    None otherwise."""
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().sweep.dir) / "teachers")
    return None
