"""The typed configuration of every entry point (``train.py``, ``convert.py``,
``evaluate.py``): what each setting is and which values it takes.

The dataclasses below are the schema Hydra composes into: a wrong type or a value outside
a closed set (``pet.levels=foo``, ``pet.sub_label=hardd``) fails at composition, naming
the key. Ranges and relations between values are checked by each dataclass's
``__post_init__``, against the facts the registries give (a model's task, a dataset's
options); nothing here builds a dataset or a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from omegaconf import MISSING

from spikezip.config.choices import (
    DatasetName,
    DType,
    Library,
    ModelName,
    TaskName,
    TeacherSource,
    VGGVariant,
    WandbMode,
)
from spikezip.data import DETECTION_DATASETS, dataset_entry
from spikezip.data.registry import SIZES, taking
from spikezip.methods import MethodConfig, method_of
from spikezip.models import (
    architecture,
    check_classifier,
    check_timm,
    model_entry,
    named,
    task_of,
)
from spikezip.optim import OptimizerConfig
from spikezip.pet.config import PETConfig
from spikezip.settings import Choice, ConfigError, SettingError, choice, positive
from spikezip.snn.encoding import Encoding
from spikezip.snn.energy import EnergyConstants
from spikezip.snn.network import MAX_TIMESTEPS, Backend


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
        entry = dataset_entry(self.name.value)
        for key in ("image_size", "max_objects", "train_split", "val_split"):
            if getattr(self, key) is not None and key not in entry.options:
                takers = taking(key)
                where = f"the detection datasets {takers}" if key in SIZES else " and ".join(takers)
                raise SettingError(f"{key} applies to {where}, not to name={self.name.value}")
        for key in ("train_split", "val_split"):
            if getattr(self, key) is not None and entry.check_split is not None:
                try:
                    entry.check_split(key, getattr(self, key))
                except ValueError as err:
                    raise SettingError(str(err)) from None

    @property
    def task(self) -> str:
        return dataset_entry(self.name.value).task

    def source(self) -> dict:
        """Which samples these are (``build_datasets`` keywords), kept with a QANN so that
        ``convert.py`` finds the same ones."""
        keys = ("root", "seed", "train_size", "val_size")
        if self.task == "detection":
            keys += ("image_size", "max_objects", "train_split", "val_split")
        return {"name": self.name.value, **{key: getattr(self, key) for key in keys}}

    def keywords(self, augment: bool | None = None) -> dict:
        """The keywords of :func:`spikezip.data.build_datasets` for these settings;
        ``augment`` overrides the setting (False for the batches that calibrate or check a
        conversion)."""
        augment = self.augment if augment is None else augment
        return {**self.source(), "download": self.download, "augment": augment}


@dataclass
class ModelConfig:
    # One of ours (small, vgg16, resnet20, ...), or with library=torchvision any of
    # torchvision's classifiers (model=torchvision model.name=resnet50), with library=timm
    # any of timm's models (model=timm model.name=vit_tiny_patch16_224).
    name: str = "small"
    library: Library = Library.spikezip
    width: float = 1.0
    rcr: bool = False  # ResNets: residual connection re-routing (paper §3.3)
    variant: VGGVariant | None = None  # VGG-16; default from the image size

    def __post_init__(self):
        self.library = choice("library", self.library, Library)
        if self.library is not Library.spikezip:
            check = check_classifier if self.library is Library.torchvision else check_timm
            try:
                self.name = check(str(self.name))
            except ValueError as err:
                raise SettingError(f"name: {err}") from None
            if self.width != 1.0 or self.rcr or self.variant is not None:
                library = self.library.value
                raise SettingError(
                    f"width, rcr and variant shape SpikeZIP's own models; library={library} "
                    f"builds {library}'s as {library} defines them"
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
        if self.rcr and not model_entry(self.key).residual:
            raise SettingError(
                f"rcr=true re-routes residual connections, but name={self.key} has "
                f"none (use one of {named(residual=True)})"
            )

    @property
    def key(self) -> str:
        """The model's name as a string (ours are a closed set, torchvision's are not)."""
        return self.name.value if isinstance(self.name, Enum) else self.name

    def arch(self, info) -> dict:
        """Keyword arguments of :func:`spikezip.models.build_model` for data described by
        ``info`` (:func:`spikezip.models.architecture`)."""
        variant = self.variant.value if self.variant is not None else None
        return architecture(
            self.key,
            info,
            library=self.library.value,
            width=self.width,
            rcr=self.rcr,
            variant=variant,
        )


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
    # eager: the reference; compiled: each neuron layer's step fused by torch.compile
    # (identical results, a compilation of some seconds to a minute on first use)
    backend: Backend = Backend.eager

    def __post_init__(self):
        positive("timesteps", self.timesteps)
        positive("max_timesteps", self.max_timesteps)
        if self.encoding is not None:  # evaluate.py: None keeps the SNN file's encoding
            self.encoding = exact_encoding("encoding", self.encoding)
        positive("eval_batches", self.eval_batches, none=True)
        self.backend = choice("backend", self.backend, Backend)


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
        ours = self.model.library is Library.spikezip
        model_task = task_of({"name": self.model.key, "library": self.model.library.value})
        if (self.data.task, model_task) != (self.task.value, self.task.value):
            wanted = (
                f"a detection dataset {list(DETECTION_DATASETS)} and a detector "
                f"{named(task='detection')}"
                if self.task is TaskName.detection
                else "a classification dataset and a classifier (task=detection for YOLO)"
            )
            raise SettingError(
                f"task={self.task.value} needs {wanted}, got data={self.data.name.value} "
                f"model={self.model.key}"
            )
        pretrained = self.teacher.source is TeacherSource.pretrained
        channels = dataset_entry(self.data.name.value).in_channels
        if self.model.library is Library.torchvision and channels != 3:
            raise SettingError(
                f"torchvision's classifiers take RGB images; data={self.data.name.value} has "
                f"{channels} channel(s) (use cifar10, cifar100 or imagenet)"
            )
        if pretrained and (
            (ours and model_entry(self.model.key).pretrained is None)
            or self.data.name != "imagenet"
        ):
            raise SettingError(
                "teacher.source=pretrained loads torchvision's (or timm's) ImageNet weights: "
                "it needs data=imagenet and model=torchvision, model=timm or a model in "
                f"{named(pretrained='torchvision')}, got "
                f"data={self.data.name} model={self.model.key}"
            )
        if self.pet.weight_bits is not None:
            if not method_of(self.method).exact:
                raise SettingError(
                    f"pet.weight_bits makes an integer SpikeZIP SNN; method="
                    f"{self.method.name.value} is approximate by design (use method=spikezip)"
                )
            if not dataset_entry(self.data.name.value).pixels:
                raise SettingError(
                    f"pet.weight_bits needs images stored as integer pixels; data="
                    f"{self.data.name.value} does not say how its pixels are stored"
                )
        overhead = method_of(self.method).overhead(self.method)
        if self.snn.timesteps <= overhead:
            raise SettingError(
                f"method={self.method.name.value} spends {overhead} steps on every input "
                f"before its output counts, and they count in T: snn.timesteps must be above "
                f"{overhead}, got {self.snn.timesteps}"
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


class ExportFormat(Choice):
    """What ``convert.py export=...`` writes beside ``snn.pt``."""

    integer = "integer"  # an integer SNN for a chip team: docs/integer_export.md
    nir = "nir"  # a rate / QCFS IF network in NIR (snn.nir)


@dataclass
class ConvertConfig:
    qann: str = _required("the qann.ckpt to convert: convert.py qann=outputs/<run>/qann.ckpt")
    out_dir: str | None = None  # default: next to the qann.ckpt
    encoding: Encoding = Encoding.even
    max_timesteps: int = MAX_TIMESTEPS  # budget for the equivalence proof
    export: ExportFormat | None = None  # also write the SNN as integer/ or snn.nir

    def __post_init__(self):
        self.encoding = exact_encoding("encoding", self.encoding)
        positive("max_timesteps", self.max_timesteps)


SCHEMAS = {"train": TrainConfig, "evaluate": EvaluateConfig, "convert": ConvertConfig}
