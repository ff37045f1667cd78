"""Typed configuration of a SpikeZIP run: the schema Hydra composes into, and its checks.

Types are enforced by OmegaConf when Hydra composes (``pet.levels=foo`` fails there, naming
the key); :func:`validate` then checks values (``pet.alpha=-1``, ``pet.sub_label=hardd``)
before any work starts. Importable without Hydra; :func:`register_configs` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from spikezip.data.datasets import DATASETS, DatasetInfo
from spikezip.models import MODELS
from spikezip.optim import OPTIMIZERS, SCHEDULES
from spikezip.pet import LABELS, SHARING
from spikezip.snn.convert import ENCODINGS

TEACHER_SOURCES = ("scratch", "checkpoint", "pretrained")
WANDB_MODES = ("offline", "online", "disabled")
RESNETS = ("resnet20", "resnet18", "resnet34")


@dataclass
class DataConfig:
    name: str = "mnist5k"
    root: str = "data"
    download: bool = False
    batch_size: int = 64
    eval_batch_size: int = 250
    num_workers: int = 0
    augment: bool = True
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "small"
    width: float = 1.0
    rcr: bool = False  # ResNets: residual connection re-routing
    variant: str | None = None  # VGG-16: imagenet | cifar; default from the image size


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    grad_clip: float | None = None


@dataclass
class TeacherConfig:
    source: str = "scratch"  # scratch | checkpoint | pretrained (torchvision, ImageNet)
    checkpoint: str | None = None
    epochs: int = 3
    optimizer: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class PETConfig:
    levels: list[int] = field(default_factory=lambda: [8, 4, 2])
    alpha: float = 1.0
    sub_label: str = "soft"
    main_label: str = "soft"
    temperature: float = 1.0
    scale_sharing: str = "share"
    bn_sharing: str = "share"
    epochs: int = 3
    optimizer: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01))


@dataclass
class EnergyConfig:
    joules_per_sop: float = 77e-15
    joules_per_flop: float = 12.5e-12


@dataclass
class SNNConfig:
    timesteps: int = 32  # accuracy is reported at every T = 1..timesteps
    max_timesteps: int = 256  # simulation budget to reach equilibrium
    encoding: str = "even"
    eval_batches: int | None = None  # final evaluation: batches of the val set (None: all)
    every_n_epochs: int = 1  # conversion callback during PET
    callback_batches: int | None = 4
    feature_maps: bool = False
    energy: EnergyConfig = field(default_factory=EnergyConfig)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    precision: str = "32-true"
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True


@dataclass
class LoggerConfig:
    csv: bool = True
    wandb: bool = False
    wandb_mode: str = "offline"  # W&B stays offline unless the user says online
    project: str = "spikezip"


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    pet: PETConfig = field(default_factory=PETConfig)
    snn: SNNConfig = field(default_factory=SNNConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    name: str = "spikezip"


@dataclass
class EvalSNNConfig(SNNConfig):
    path: str | None = None  # the snn.pt to evaluate (evaluate.py snn=PATH)
    dtype: str = "float32"  # float64 for a bit-exact comparison with the QANN


@dataclass
class EvaluateConfig:
    snn: EvalSNNConfig = field(default_factory=EvalSNNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str | None = None  # default: <directory of snn.pt>/eval_<data.name>


@dataclass
class ConvertConfig:
    qann: str | None = None  # the qann.ckpt to convert (convert.py qann=PATH)
    out_dir: str | None = None  # default: next to the qann.ckpt
    encoding: str = "even"
    max_timesteps: int = 5000


class ConfigError(ValueError):
    """A configuration value that is out of range; the message names the key."""


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of {list(choices)}")


def _positive(key: str, value, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be {bound}, got {value!r}")


def _optimizer(prefix: str, opt) -> None:
    _choice(f"{prefix}.name", opt.name, OPTIMIZERS)
    _choice(f"{prefix}.schedule", opt.schedule, SCHEDULES)
    _positive(f"{prefix}.lr", opt.lr)
    _positive(f"{prefix}.weight_decay", opt.weight_decay, allow_zero=True)
    _positive(f"{prefix}.grad_clip", opt.grad_clip, allow_none=True)


def validate(cfg: DictConfig | TrainConfig) -> None:
    """Check every value the types cannot; raise :class:`ConfigError` naming the key."""
    _choice("data.name", cfg.data.name, DATASETS)
    _positive("data.batch_size", cfg.data.batch_size)
    _positive("data.eval_batch_size", cfg.data.eval_batch_size)
    _choice("model.name", cfg.model.name, tuple(MODELS))
    _positive("model.width", cfg.model.width)
    if cfg.model.rcr and cfg.model.name not in RESNETS:
        raise ConfigError(
            f"model.rcr=true re-routes residual connections; model.name={cfg.model.name} has "
            f"none (use one of {list(RESNETS)})"
        )
    if cfg.model.variant is not None:
        _choice("model.variant", cfg.model.variant, ("imagenet", "cifar"))
    _choice("teacher.source", cfg.teacher.source, TEACHER_SOURCES)
    if cfg.teacher.source == "checkpoint" and not cfg.teacher.checkpoint:
        raise ConfigError("teacher.source=checkpoint needs teacher.checkpoint=PATH")
    _positive("teacher.epochs", cfg.teacher.epochs, allow_zero=cfg.teacher.source != "scratch")
    _optimizer("teacher.optimizer", cfg.teacher.optimizer)
    levels = list(cfg.pet.levels)
    if not levels or any(n < 1 for n in levels):
        raise ConfigError(f"pet.levels must be a non-empty list of positive integers, got {levels}")
    _positive("pet.alpha", cfg.pet.alpha, allow_zero=True)
    _positive("pet.temperature", cfg.pet.temperature)
    _choice("pet.sub_label", cfg.pet.sub_label, LABELS)
    _choice("pet.main_label", cfg.pet.main_label, LABELS)
    _choice("pet.scale_sharing", cfg.pet.scale_sharing, SHARING)
    _choice("pet.bn_sharing", cfg.pet.bn_sharing, SHARING)
    _positive("pet.epochs", cfg.pet.epochs)  # an untrained QANN has no learned scales
    _optimizer("pet.optimizer", cfg.pet.optimizer)
    _positive("snn.timesteps", cfg.snn.timesteps)
    _positive("snn.max_timesteps", cfg.snn.max_timesteps)
    _choice("snn.encoding", cfg.snn.encoding, ENCODINGS)
    _positive("snn.every_n_epochs", cfg.snn.every_n_epochs)
    _positive("snn.eval_batches", cfg.snn.eval_batches, allow_none=True)
    _positive("snn.callback_batches", cfg.snn.callback_batches, allow_none=True)
    _positive("snn.energy.joules_per_sop", cfg.snn.energy.joules_per_sop)
    _positive("snn.energy.joules_per_flop", cfg.snn.energy.joules_per_flop)
    _choice("logger.wandb_mode", cfg.logger.wandb_mode, WANDB_MODES)


# What a run directory's artifacts depend on: a rerun in the same directory (to resume)
# must not change these. Epochs, learning rates and batch sizes may change.
IDENTITY_KEYS = (
    "seed", "data.name", "data.seed", "model", "teacher.source", "teacher.checkpoint",
    "pet.levels", "pet.alpha", "pet.sub_label", "pet.main_label", "pet.temperature",
    "pet.scale_sharing", "pet.bn_sharing",
)  # fmt: skip


def run_identity(cfg) -> dict:
    """The values of :data:`IDENTITY_KEYS` in ``cfg``, as plain data."""
    return {key: to_plain(OmegaConf.select(cfg, key)) for key in IDENTITY_KEYS}


def check_same_run(saved: dict, cfg) -> None:
    """Refuse to continue a run directory with settings that would change its artifacts."""
    current = run_identity(cfg)
    changed = [k for k in IDENTITY_KEYS if saved.get(k) != current[k]]
    if changed:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(
            f"this run directory was made with other settings ({diffs}). Resume with the "
            "same settings, or start a new run directory."
        )


def model_arch(model: ModelConfig | DictConfig, info: DatasetInfo) -> dict:
    """Keyword arguments of :func:`spikezip.models.build_model` for this model and data."""
    arch: dict = {"name": model.name, "num_classes": info.num_classes}
    arch["in_channels"] = info.in_channels
    arch["width"] = float(model.width)
    if model.name == "small":
        arch["image_size"] = info.image_size
    elif model.name == "vgg16":
        arch["variant"] = model.variant or ("cifar" if info.image_size <= 64 else "imagenet")
    else:
        arch["rcr"] = bool(model.rcr)
    return arch


def to_plain(cfg):
    """Plain ``dict`` / ``list`` (for checkpoints loadable with ``weights_only=True``, JSON)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def register_configs() -> None:
    """Register the schema so Hydra type-checks every composed config against it."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="convert_schema", node=ConvertConfig)


def snn_path_override(argv: list[str], options: tuple[str, ...] = ("default",)) -> list[str]:
    """Let ``evaluate.py snn=PATH`` name the SNN file although ``snn`` is also the config
    group of simulation settings: ``snn=X`` for an X that is not a group option becomes
    ``snn.path=X``."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key == "snn" and sep and value not in options:
            arg = f"snn.path={value}"
        out.append(arg)
    return out
