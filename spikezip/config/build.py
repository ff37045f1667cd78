"""The composed config (OmegaConf) turned into the schema's dataclasses, and back into
plain data; an error names the full key of what is wrong."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from enum import Enum

from omegaconf import DictConfig, ListConfig, OmegaConf

from spikezip.settings import ConfigError, SettingError


def _unknown_key(key: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {key}{close[0]}?)" if close else ""
    return ConfigError(f"unknown key {key}{name}{hint}; known keys here: {known}")


def _build(cls: type, node: DictConfig, key: str):
    """``cls`` from ``node``, children first, so an error names the deepest key. The
    dataclass's own field types say which children are settings of their own, so a
    config without a schema attached (``OmegaConf.load`` of a saved ``config.yaml``) is
    checked as thoroughly as a composed one."""
    field_info = {f.name: f for f in dataclasses.fields(cls)}
    types = typing.get_type_hints(cls)
    for name in node:
        if name not in field_info:  # e.g. added with +key=value: never silently ignored
            raise _unknown_key(key, str(name), list(field_info))
    values = {}
    for name, info in field_info.items():
        child = node._get_node(name)  # `name in node` is False for a missing value
        if child is None:
            continue
        if OmegaConf.is_missing(node, name):
            what = info.metadata.get("required", "no default")
            raise ConfigError(f"{key}{name} is required ({what})")
        if dataclasses.is_dataclass(types[name]):
            if not isinstance(child, DictConfig):
                raise ConfigError(f"{key}{name} must be a group of settings, got {node[name]!r}")
            values[name] = _build(types[name], child, f"{key}{name}.")
        elif isinstance(child, (DictConfig, ListConfig)):
            values[name] = OmegaConf.to_container(child, resolve=True)
        else:
            values[name] = node[name]
    try:
        return cls(**values)
    except SettingError as err:
        raise ConfigError(f"{key}{err}") from None


def validate(cfg: DictConfig, schema: type | None = None):
    """Check a composed config and return it as the schema's dataclass
    (:class:`TrainConfig`, :class:`EvaluateConfig`, :class:`ConvertConfig`).

    Raises:
        ConfigError: naming the full key of the first wrong or unknown value.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return cfg  # built in Python: its __post_init__ checks have run
    schema = schema or OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"validate() needs a schema for a config without one, got {schema}")
    return _build(schema, cfg, "")


def to_plain(value):
    """Plain ``dict`` / ``list`` / str (for JSON, and for checkpoints that load with
    ``weights_only=True``) from a config node, a settings dataclass or an enum."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = OmegaConf.structured(value)
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if isinstance(value, Enum):
        return value.value
    return value
