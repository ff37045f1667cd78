"""Configuration: the options (:mod:`~spikezip.config.choices`), the schema
(:mod:`~spikezip.config.schema`), its building from a composed config
(:mod:`~spikezip.config.build`), a run's identity (:mod:`~spikezip.config.identity`) and
what Hydra is told (:mod:`~spikezip.config.hydra`). Importable without Hydra."""

from spikezip.config.build import to_plain, validate
from spikezip.config.choices import DType, Library, TaskName, TeacherSource, VGGVariant
from spikezip.config.hydra import chosen_settings, record_hydra_run, register_configs
from spikezip.config.identity import IDENTITY_FORMAT, TEACHER_KEYS, check_same_run, run_identity
from spikezip.config.schema import (
    ConvertConfig,
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    SimulationConfig,
    SNNConfig,
    TrainConfig,
)
from spikezip.config.usage import refuse_unused, unused_settings
from spikezip.settings import ConfigError

__all__ = [
    "chosen_settings",
    "refuse_unused",
    "unused_settings",
    "IDENTITY_FORMAT",
    "TEACHER_KEYS",
    "ConfigError",
    "ConvertConfig",
    "DType",
    "DataConfig",
    "EvaluateConfig",
    "Library",
    "ModelConfig",
    "SNNConfig",
    "SimulationConfig",
    "TaskName",
    "TeacherSource",
    "TrainConfig",
    "VGGVariant",
    "check_same_run",
    "record_hydra_run",
    "register_configs",
    "run_identity",
    "to_plain",
    "validate",
]
