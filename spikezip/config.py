"""Typed configuration of every entry point (``train.py``, ``convert.py``, ``evaluate.py``)
and the one function that checks it.

The dataclasses below are the schema Hydra composes into: a wrong type or a value outside
a closed set (``pet.levels=foo``, ``pet.sub_label=hardd``) fails at composition, naming
the key. Ranges and relations between values are checked by each dataclass's
``__post_init__``; :func:`validate` runs them all, before any work, turns the composed
config into these objects and names the full key of what is wrong. Importable without
Hydra; :func:`register_configs` imports it.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from spikezip.artifacts import atomic_write
from spikezip.data.datasets import (
    DATASETS,
    DETECTION_DATASETS,
    INFO,
    DatasetInfo,
    build_datasets,
)
from spikezip.methods import MethodConfig
from spikezip.models import DETECTORS, MODELS, PRETRAINED, RESNETS
from spikezip.optim import OptimizerConfig
from spikezip.pet.config import PETConfig
from spikezip.settings import Choice, SettingError, choice, positive
from spikezip.snn.encoding import Encoding
from spikezip.snn.energy import EnergyConstants
from spikezip.snn.network import MAX_TIMESTEPS

# Closed sets taken from the registries, so a new dataset or model is one entry there.
DatasetName = Choice("DatasetName", {name: name for name in DATASETS})
ModelName = Choice("ModelName", {name: name for name in MODELS})


class Library(Choice):
    spikezip = "spikezip"  # this package's models (torchvision's parameter names)
    torchvision = "torchvision"  # any torchvision classifier, as torchvision defines it


class TaskName(Choice):
    classification = "classification"  # class scores, accuracy
    detection = "detection"  # YOLO boxes, mAP (data: mnist_detection, voc, coco)


class VGGVariant(Choice):
    imagenet = "imagenet"  # 224x224 input, 7x7 pooled features, 4096-wide classifier
    cifar = "cifar"  # 32x32 input, 1x1 pooled features, 512-wide classifier


class TeacherSource(Choice):
    scratch = "scratch"  # trained here, on labels
    checkpoint = "checkpoint"  # teacher.checkpoint=PATH
    pretrained = "pretrained"  # torchvision's ImageNet weights


class WandbMode(Choice):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class DType(Choice):
    float32 = "float32"
    float64 = "float64"  # bit-exact comparison with the QANN

    @property
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)


class ConfigError(SettingError):
    """A configuration value that is wrong; the message names the full key."""


def exact_encoding(name: str, value) -> Encoding:
    """An encoding an ST-BIF SNN is exact with: ``even`` (the paper's) or ``once``."""
    encoding = choice(name, value, Encoding)
    if encoding is Encoding.constant:
        raise SettingError(
            f"{name}=constant feeds input and biases on every step, as rate-coded conversions "
            "do: an ST-BIF SNN never settles with it, so it can be neither proven nor "
            "measured at equilibrium; use even (the paper's) or once"
        )
    return encoding


def _required(what: str):
    """A value the user must give (``???`` in the composed config); ``what`` says how."""
    return field(default=MISSING, metadata={"required": what})


@dataclass
class DataConfig:
    name: DatasetName = DatasetName.mnist5k
    root: str = "data"
    download: bool = False
    batch_size: int = 64
    eval_batch_size: int = 250
    num_workers: int = 0
    augment: bool = True
    seed: int = 0  # mnist5k / digits: the split; every dataset: the subsets below
    train_size: int | None = None  # a seeded random subset of the training split
    val_size: int | None = None  # ... and of the validation (test) split
    # Detection sets only (None: the set's default): the side images are resized to, and
    # the most objects one image may hold.
    image_size: int | None = None
    max_objects: int | None = None
    # VOC / COCO: which image sets, e.g. "2007-trainval+2012-trainval" and "2007-test"
    # (VOC), "train2017" and "val2017" (COCO). None: those defaults.
    train_split: str | None = None
    val_split: str | None = None

    def __post_init__(self):
        self.name = choice("name", self.name, DatasetName)
        positive("batch_size", self.batch_size)
        positive("eval_batch_size", self.eval_batch_size)
        positive("num_workers", self.num_workers, zero=True)
        for key in ("train_size", "val_size", "image_size", "max_objects"):
            if getattr(self, key) is not None:
                positive(key, getattr(self, key))
        for key in ("image_size", "max_objects"):
            if getattr(self, key) is not None and self.name.value not in DETECTION_DATASETS:
                raise SettingError(
                    f"{key} applies to the detection datasets {list(DETECTION_DATASETS)}, "
                    f"not to name={self.name.value}"
                )
        for key in ("train_split", "val_split"):
            if getattr(self, key) is not None and self.name.value not in ("voc", "coco"):
                raise SettingError(f"{key} applies to voc and coco, not to name={self.name.value}")
        if self.name.value == "voc":
            from spikezip.data.detection import voc_image_sets

            for key in ("train_split", "val_split"):
                if getattr(self, key) is not None:
                    try:
                        voc_image_sets(key, getattr(self, key), one=key == "val_split")
                    except ValueError as err:
                        raise SettingError(str(err)) from None

    @property
    def task(self) -> str:
        return "detection" if self.name.value in DETECTION_DATASETS else "classification"

    def source(self) -> dict:
        """Which samples these are (``build_datasets`` keywords), kept with a QANN so that
        ``convert.py`` finds the same ones."""
        keys = ("root", "seed", "train_size", "val_size")
        if self.task == "detection":
            keys += ("image_size", "max_objects", "train_split", "val_split")
        return {"name": self.name.value, **{key: getattr(self, key) for key in keys}}

    def build(self, augment: bool | None = None) -> tuple:
        """``(train, val, info)``; ``augment`` overrides the setting (False for the
        batches that calibrate or check a conversion)."""
        augment = self.augment if augment is None else augment
        return build_datasets(**self.source(), download=self.download, augment=augment)


@dataclass
class ModelConfig:
    # One of ours (small, vgg16, resnet20, ...), or with library=torchvision any of
    # torchvision's classifiers (model=torchvision model.name=resnet50).
    name: str = "small"
    library: Library = Library.spikezip
    width: float = 1.0
    rcr: bool = False  # ResNets: residual connection re-routing (paper §3.3)
    variant: VGGVariant | None = None  # VGG-16; default from the image size

    def __post_init__(self):
        self.library = choice("library", self.library, Library)
        if self.library is Library.torchvision:
            from spikezip.models.zoo import check_classifier

            try:
                self.name = check_classifier(str(self.name))
            except ValueError as err:
                raise SettingError(f"name: {err}") from None
            if self.width != 1.0 or self.rcr or self.variant is not None:
                raise SettingError(
                    "width, rcr and variant shape SpikeZIP's own models; library=torchvision "
                    "builds torchvision's as torchvision defines them"
                )
        else:
            try:
                self.name = choice("name", self.name, ModelName)
            except SettingError as err:
                raise SettingError(
                    f"{err} (torchvision's classifiers: model=torchvision model.name=NAME)"
                ) from None
        positive("width", self.width)
        if self.variant is not None:
            self.variant = choice("variant", self.variant, VGGVariant)
        if self.rcr and self.key not in RESNETS:
            raise SettingError(
                f"rcr=true re-routes residual connections, but name={self.key} has "
                f"none (use one of {list(RESNETS)})"
            )

    @property
    def key(self) -> str:
        """The model's name as a string (ours are a closed set, torchvision's are not)."""
        return self.name.value if isinstance(self.name, Enum) else self.name

    def arch(self, info: DatasetInfo) -> dict:
        """Keyword arguments of :func:`spikezip.models.build_model` for these inputs (a
        detector's also hold its input size, which its output layout depends on)."""
        arch: dict = {"name": self.key, "num_classes": info.num_classes}
        arch["in_channels"] = info.in_channels
        arch["width"] = float(self.width)
        if self.library is Library.torchvision:
            arch["library"] = Library.torchvision.value
        elif self.name.value in DETECTORS:
            from spikezip.models.yolo import anchors_for

            anchors = anchors_for(self.name.value, info.name)
            arch["anchors"] = [list(a) for a in anchors]  # plain lists: JSON and checkpoints
            arch["image_size"] = info.image_size
        elif self.name.value == "small":
            arch["image_size"] = info.image_size
        elif self.name.value == "vgg16":
            variant = self.variant or ("cifar" if info.image_size <= 64 else "imagenet")
            arch["variant"] = VGGVariant(variant).value
        else:
            arch["rcr"] = bool(self.rcr)
        return arch


@dataclass
class TeacherConfig:
    source: TeacherSource = TeacherSource.scratch
    checkpoint: str | None = None
    epochs: int = 5
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    # Where runs share the teachers they would train identically (the jobs of a sweep:
    # <sweep dir>/teachers); None: every run trains its own.
    cache: str | None = None

    def __post_init__(self):
        self.source = choice("source", self.source, TeacherSource)
        if self.source is TeacherSource.checkpoint and not self.checkpoint:
            raise SettingError("checkpoint=PATH is needed with source=checkpoint")
        # Only a teacher trained here has epochs; zero epochs of scratch is no teacher.
        positive("epochs", self.epochs, zero=self.source is not TeacherSource.scratch)


@dataclass
class SimulationConfig:
    """How an SNN is simulated and measured."""

    timesteps: int = 32  # accuracy is reported at every T = 1..timesteps
    max_timesteps: int = MAX_TIMESTEPS  # budget to reach equilibrium (T_eq per sample)
    encoding: Encoding = Encoding.even
    eval_batches: int | None = None  # final measurement: batches of the val set (None: all)
    feature_maps: bool = False  # per-layer L1 distance SNN vs QANN at each T (Fig. 5)
    energy: EnergyConstants = field(default_factory=EnergyConstants)

    def __post_init__(self):
        positive("timesteps", self.timesteps)
        positive("max_timesteps", self.max_timesteps)
        if self.encoding is not None:  # evaluate.py: None keeps the SNN file's encoding
            self.encoding = exact_encoding("encoding", self.encoding)
        positive("eval_batches", self.eval_batches, none=True)


@dataclass
class SNNConfig(SimulationConfig):
    """``train.py``'s SNN settings: the simulation, and the conversion callback in PET."""

    every_n_epochs: int = 1
    callback_batches: int | None = 4

    def __post_init__(self):
        super().__post_init__()
        positive("every_n_epochs", self.every_n_epochs)
        positive("callback_batches", self.callback_batches, none=True)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1  # per node: a count, a list of GPU ids, or -1 for all
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several processes (Lightning's strategies)
    sync_batchnorm: bool = False  # batch statistics over all processes (PET: per path)
    precision: str = "32-true"
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True

    def __post_init__(self):
        positive("num_nodes", self.num_nodes)
        if self.sync_batchnorm and self.accelerator == "cpu":
            raise SettingError(
                "sync_batchnorm=true needs GPUs: torch's SyncBatchNorm does not run on the CPU"
            )

    def simulation_device(self) -> torch.device:
        """Where to simulate SNNs: CUDA for gpu / cuda / auto when present; an explicit
        gpu request without CUDA is an error, not a silent CPU run."""
        if self.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())  # this process's GPU
        if self.accelerator in ("gpu", "cuda"):
            raise ConfigError(f"trainer.accelerator={self.accelerator} but CUDA is not available")
        return torch.device("cpu")


@dataclass
class LoggerConfig:
    csv: bool = True
    wandb: bool = False
    wandb_mode: WandbMode = WandbMode.offline  # W&B stays offline unless the user says online
    project: str = "spikezip"

    def __post_init__(self):
        self.wandb_mode = choice("wandb_mode", self.wandb_mode, WandbMode)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    pet: PETConfig = field(default_factory=PETConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    snn: SNNConfig = field(default_factory=SNNConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    task: TaskName = TaskName.classification
    seed: int = 0
    name: str = "spikezip"

    def __post_init__(self):
        self.task = choice("task", self.task, TaskName)
        detector = self.model.key in DETECTORS
        if (self.data.task, detector) != (self.task.value, self.task is TaskName.detection):
            wanted = (
                f"a detection dataset {list(DETECTION_DATASETS)} and a detector {list(DETECTORS)}"
                if self.task is TaskName.detection
                else "a classification dataset and a classifier (task=detection for YOLO)"
            )
            raise SettingError(
                f"task={self.task.value} needs {wanted}, got data={self.data.name.value} "
                f"model={self.model.key}"
            )
        pretrained = self.teacher.source is TeacherSource.pretrained
        ours = self.model.library is Library.spikezip
        if not ours and INFO[self.data.name.value].in_channels != 3:
            raise SettingError(
                f"torchvision's classifiers take RGB images; data={self.data.name.value} has "
                f"{INFO[self.data.name.value].in_channels} channel(s) (use cifar10, cifar100 "
                "or imagenet)"
            )
        if pretrained and (
            (ours and self.model.key not in PRETRAINED) or self.data.name != "imagenet"
        ):
            raise SettingError(
                "teacher.source=pretrained loads torchvision's ImageNet weights: it needs "
                f"data=imagenet and model=torchvision or a model in {list(PRETRAINED)}, got "
                f"data={self.data.name} model={self.model.key}"
            )


@dataclass
class EvalSimulationConfig(SimulationConfig):
    """``evaluate.py``'s SNN: which file, and the simulation settings."""

    path: str = _required("the snn.pt to evaluate: evaluate.py snn.path=outputs/<run>/snn.pt")
    encoding: Encoding | None = None  # None: the encoding the SNN file was converted with
    dtype: DType = DType.float32

    def __post_init__(self):
        super().__post_init__()
        self.dtype = choice("dtype", self.dtype, DType)


@dataclass
class EvaluateConfig:
    snn: EvalSimulationConfig = field(default_factory=EvalSimulationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str | None = None  # default: <directory of snn.pt>/eval_<data.name>


@dataclass
class ConvertConfig:
    qann: str = _required("the qann.ckpt to convert: convert.py qann=outputs/<run>/qann.ckpt")
    out_dir: str | None = None  # default: next to the qann.ckpt
    encoding: Encoding = Encoding.even
    max_timesteps: int = MAX_TIMESTEPS  # budget for the equivalence proof

    def __post_init__(self):
        self.encoding = exact_encoding("encoding", self.encoding)
        positive("max_timesteps", self.max_timesteps)


SCHEMAS = {"train": TrainConfig, "evaluate": EvaluateConfig, "convert": ConvertConfig}


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


# Settings that do not change what a run directory holds (the SNN is converted and
# measured again on every rerun), so a rerun that resumes the run may change them. Every
# other setting is part of the run's identity: epochs and learning rates too, since a
# cosine schedule and a checkpoint belong to one number of epochs.
NOT_IDENTITY = (
    "name", "logger", "snn", "data.root", "data.download", "data.num_workers",
    "data.eval_batch_size", "trainer.accelerator", "trainer.enable_progress_bar",
    "trainer.log_every_n_steps", "trainer.limit_val_batches", "pet.max_accuracy_drop",
    "teacher.cache",
)  # fmt: skip


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


IDENTITY_FORMAT = "spikezip-run/4"
# The run-identity keys a teacher depends on: runs that agree on them train the same one.
TEACHER_KEYS = ("format", "seed", "data.", "model.", "teacher.", "trainer.")


def run_identity(cfg: TrainConfig) -> dict:
    """Every setting that shapes a run directory's artifacts, as ``{dotted key: value}``."""
    flat = _flatten(to_plain(cfg))
    identity = {
        key: value
        for key, value in flat.items()
        if not any(key == n or key.startswith(f"{n}.") for n in NOT_IDENTITY)
    }
    return {"format": IDENTITY_FORMAT, **identity}


def check_same_run(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to continue a run directory with settings that would change its artifacts."""
    if saved.get("format") != IDENTITY_FORMAT:
        raise ConfigError(
            "this run directory was made by another version of SpikeZIP (its "
            f"run_identity.json has format {saved.get('format')!r}, not {IDENTITY_FORMAT!r}); "
            "start a new run directory"
        )
    current = run_identity(cfg)
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        reuse = ""
        if not any(k.startswith(TEACHER_KEYS) for k in changed):
            reuse = (
                " (to reuse its teacher: teacher=checkpoint teacher.checkpoint=<run>/teacher.ckpt)"
            )
        raise ConfigError(
            f"this run directory was made with other settings ({diffs}). Resume with the "
            f"same settings, or start a new run directory{reuse}."
        )


def record_hydra_run(run_dir: str | Path, cfg: DictConfig) -> None:
    """Write ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra would,
    when running under Hydra. ``train.yaml`` sets ``hydra.output_subdir: null`` and the
    pipeline calls this once the run directory accepted the settings, so a refused rerun
    leaves the files of the run it belongs to as they were."""
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


def register_configs() -> None:
    """Register the schemas so Hydra type-checks every composed config against them."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
    if not OmegaConf.has_resolver("spikezip.sweep_teachers"):
        OmegaConf.register_new_resolver("spikezip.sweep_teachers", _sweep_teachers)


def _sweep_teachers() -> str | None:
    """``<sweep dir>/teachers`` in a Hydra multirun (its jobs share identical teachers),
    None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().sweep.dir) / "teachers")
    return None
