"""Paths-ensemble training (paper §3.4): several quantization paths over one set of weights.

Every conv / linear weight is shared by all paths. Each path quantizes with its own number
of levels ``n_i`` (``levels[0] = n_mp`` is the major path, the one converted to an SNN)
and normalises with its own batch statistics. What else is shared is an ablation axis
(Table 5a/5b): ``share`` (the paper's scheme), ``identical`` (one set used unchanged by
every path) or ``independent`` (one set per path).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from spikezip.methods import Method
from spikezip.pet.config import PETConfig, Sharing, check_path_levels
from spikezip.quant.integer import (
    attach_weight_grids,
    integer_plan,
    integerize,
    remove_weight_grids,
)
from spikezip.quant.qrelu import QReLU, lsq_init_scale, lsq_quantize
from spikezip.settings import SettingError, choice


class PathSelector:
    """The path every path-aware layer of one PET model uses now (one object per model)."""

    def __init__(self) -> None:
        self.index = 0


class PathQReLU(nn.Module):
    """Q-ReLU with one quantizer per path (eq. 4).

    ``share``: one learned s; path i uses step ``n_mp * s / n_i`` and ``n_i`` levels, so all
    paths clip at ``n_mp * s``. ``identical``: one s, step s for every path (clip at
    ``n_i * s``). ``independent``: a learned step per path. A step not yet learned is set by
    LSQ's rule from the first training batch its path sees. ``signed``: path i
    quantizes to ``[-n_i, n_i]``, as a signed :class:`QReLU`.
    """

    positive_parameters = ("scales",)  # each path's step must stay > 0 (the divergence guard)

    def __init__(
        self,
        levels: Sequence[int],
        sharing: Sharing,
        selector: PathSelector,
        scale: float | None,
        signed: bool = False,
    ):
        super().__init__()
        self.levels = list(levels)
        self.signed = bool(signed)
        self.sharing = Sharing(sharing)
        self.selector = selector
        count = len(self.levels) if self.sharing is Sharing.independent else 1
        init = 1.0 if scale is None else float(scale)
        self.scales = nn.ParameterList([nn.Parameter(torch.tensor(init)) for _ in range(count)])
        self.register_buffer("initialized", torch.full((count,), scale is not None))

    def _param_index(self, path: int) -> int:
        return path if self.sharing is Sharing.independent else 0

    def _ratio(self, path: int) -> float:
        """step_i / s: exactly 1.0 for the major path, so its step is s itself."""
        return self.levels[0] / self.levels[path] if self.sharing is Sharing.share else 1.0

    def step(self, path: int) -> Tensor:
        """Quantization step of ``path`` (differentiable in the learned scale)."""
        return self.scales[self._param_index(path)] * self._ratio(path)

    def forward(self, x: Tensor) -> Tensor:
        path = self.selector.index
        p = self._param_index(path)
        if self.training and not bool(self.initialized[p]):
            with torch.no_grad():
                step = lsq_init_scale(x, self.levels[path])
                self.scales[p].copy_(step / self._ratio(path))
                self.initialized[p] = True
        low = -self.levels[path] if self.signed else 0
        return lsq_quantize(x, self.step(path), self.levels[path], low)

    def export(self, path: int = 0) -> QReLU:
        """A plain Q-ReLU that computes exactly what ``path`` computes."""
        q = QReLU(self.levels[path], scale=1.0, signed=self.signed)  # initialised; step next
        q.scale.data = self.step(path).detach().clone()  # exact, in the model's dtype
        return q

    def extra_repr(self) -> str:
        return f"levels={self.levels}, sharing={self.sharing.value}"


class PathBatchNorm(nn.Module):
    """Batch-norm with per-path statistics (eq. 5).

    ``share``: running and batch statistics per path, gamma and beta shared;
    ``identical``: one batch-norm used by every path; ``independent``: one per path.
    """

    def __init__(self, bn: nn.Module, paths: int, sharing: Sharing, selector: PathSelector):
        super().__init__()
        self.sharing = Sharing(sharing)
        self.selector = selector
        count = 1 if self.sharing is Sharing.identical else paths
        norms = [copy.deepcopy(bn) for _ in range(count)]
        if self.sharing is Sharing.share and bn.affine:
            for norm in norms[1:]:
                norm.weight, norm.bias = norms[0].weight, norms[0].bias
        self.norms = nn.ModuleList(norms)

    def norm(self, path: int) -> nn.Module:
        return self.norms[0 if self.sharing is Sharing.identical else path]

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.selector.index)(x)

    def extra_repr(self) -> str:
        return f"sharing={self.sharing.value}"


class PETModel(nn.Module):
    """A QANN with one quantization path per entry of ``levels``, sharing its weights.

    ``with model.path(i): logits = model(x)`` runs path i; outside any ``path`` block the
    major path (0) runs. Input / output shapes are those of the QANN.
    """

    def __init__(self, net: nn.Module, levels: Sequence[int], selector: PathSelector):
        super().__init__()
        self.net = net
        self.levels = list(levels)
        self.selector = selector

    @property
    def num_paths(self) -> int:
        return len(self.levels)

    @contextlib.contextmanager
    def path(self, index: int) -> Iterator[PETModel]:
        """Run path ``index`` inside the block (0 is the major path)."""
        if not 0 <= index < self.num_paths:
            raise IndexError(f"path {index} does not exist: this model has levels {self.levels}")
        previous, self.selector.index = self.selector.index, index
        try:
            yield self
        finally:
            self.selector.index = previous

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_paths(self, x: Tensor) -> list[Tensor]:
        """Every path's output on ``x``, major path first."""
        outputs = []
        for i in range(self.num_paths):
            with self.path(i):
                outputs.append(self.net(x))
        return outputs

    def export_major_path(self) -> nn.Module:
        """A plain QANN (eval mode) computing exactly the major path: its batch-norm
        statistics, Q-ReLUs with ``n_mp`` levels and its step, weights on their integer
        grid if trained on one (:meth:`integer_plan`). ``to_snn`` converts it."""
        exported = remove_weight_grids(copy.deepcopy(self.net))
        for name, module in list(exported.named_modules()):
            if isinstance(module, PathQReLU):
                exported.set_submodule(name, module.export(0))
            elif isinstance(module, PathBatchNorm):
                exported.set_submodule(name, copy.deepcopy(module.norm(0)))
        return exported.eval()

    # Set by use_weight_grids: the bits, the input's pixels and shape, each layer's Link.
    grids: tuple | None = None

    def use_weight_grids(self, bits: int, pixels, input_shape) -> PETModel:
        """Train every conv / linear weight on its integer grid of ``bits`` bits (see
        :mod:`spikezip.quant.integer`); ``pixels``: the input's pixel format."""
        found = attach_weight_grids(self.net, self.export_major_path(), bits, pixels, input_shape)
        self.grids = (bits, pixels, list(input_shape), found)
        return self

    def integer_plan(self) -> dict | None:
        """What :func:`spikezip.quant.integerize` needs with the exported major path (None
        for float weights)."""
        if self.grids is None:
            return None
        bits, pixels, shape, found = self.grids
        return {**integer_plan(self.net, bits, pixels, found), "input_shape": shape}


def to_pet(
    qann: nn.Module,
    levels: Sequence[int] = (8, 4, 2),
    *,
    scale_sharing: Sharing | str = Sharing.share,
    bn_sharing: Sharing | str = Sharing.share,
) -> PETModel:
    """Wrap a copy of ``qann`` for paths-ensemble training.

    ``levels[0]`` is the major path's ``n_mp``; the rest are sub-paths (any number; one
    entry is plain quantization-aware training). Every :class:`QReLU` becomes a
    :class:`PathQReLU` (keeping its learned scale, if any, as the major path's step) and
    every batch-norm a :class:`PathBatchNorm`.
    """
    levels = check_path_levels(levels)
    scale_sharing = choice("scale_sharing", scale_sharing, Sharing)
    bn_sharing = choice("bn_sharing", bn_sharing, Sharing)
    left = [n for n, m in qann.named_modules() if isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    if left or not any(isinstance(m, QReLU) for m in qann.modules()):
        where = f" ('{left[0]}' is still a {type(qann.get_submodule(left[0])).__name__})"
        raise ValueError(
            "to_pet needs a QANN: morph the ANN with spikezip.quant.to_qann first"
            + (where if left else "")
        )
    net = copy.deepcopy(qann)
    selector = PathSelector()
    for name, module in list(net.named_modules()):
        if isinstance(module, QReLU):
            scale = module.scale.item() if bool(module.initialized) else None
            path = PathQReLU(levels, scale_sharing, selector, scale, signed=module.signed)
            net.set_submodule(name, path)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            net.set_submodule(name, PathBatchNorm(module, len(levels), bn_sharing, selector))
    return PETModel(net, levels, selector)


def fine_tuning_model(
    teacher: nn.Module, config: PETConfig, method: Method, settings=None, inputs=None
) -> PETModel:
    """What a run fine-tunes from the teacher: for a method trained by the ensemble
    (:attr:`Method.ensemble`, SpikeZIP) the PET model of its student (all
    ``config.levels`` paths); for the others their own ANN (:meth:`Method.student`, with
    its L) as a single path, trained with the same loss, epochs and
    optimizer. ``settings``: the method's (:class:`spikezip.methods.MethodConfig`), whose
    ``levels`` is such a method's own L when set (:meth:`Method.fine_tuned_levels`).
    With ``config.weight_bits`` the weights train on their integer grid; ``inputs``
    (``{"pixels": ..., "shape": ...}``, the dataset's pixel format and one sample's shape)
    is then needed."""
    levels = method.fine_tuned_levels(config, settings)
    student = method.student(teacher, levels[0], settings)
    if method.ensemble:
        model = to_pet(
            student, levels, scale_sharing=config.scale_sharing, bn_sharing=config.bn_sharing
        )
    else:
        model = PETModel(student, levels, PathSelector())
    if config.weight_bits is not None:
        if not method.exact:
            raise SettingError(
                f"pet.weight_bits applies to SpikeZIP's exact SNNs; method={method.name} "
                "is approximate by design"
            )
        if not inputs or "shape" not in inputs:
            raise SettingError(
                "pet.weight_bits needs the input's pixel format and shape "
                "(fine_tuning_model(..., inputs={'pixels': ..., 'shape': ...}))"
            )
        model.use_weight_grids(config.weight_bits, inputs.get("pixels"), inputs["shape"])
    return model


def export_network(model: PETModel) -> nn.Module:
    """The network a run converts: the major path (:meth:`PETModel.export_major_path`),
    or, trained on integer grids, its integer QANN (:func:`spikezip.quant.integerize`),
    whose ``source`` is the float QANN."""
    qann = model.export_major_path()
    plan = model.integer_plan()
    if plan is None:
        return qann
    return integerize(qann, plan, plan["input_shape"])
