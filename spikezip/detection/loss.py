"""YOLOv3's training loss, and the distillation of one detector from another (for PET).

Assignment (YOLOv3): every object goes to the one anchor, over all scales, whose shape
fits its box best (IoU of the two boxes centred together), at the grid cell holding its
centre. For that row the targets are ``tx = x / stride - cx`` (through a sigmoid),
``tw = log(w / anchor_w)`` (ty, th likewise), objectness 1 and a one-hot class.

    ``L = sum_pos (2 - wh / S^2) [BCE(tx, ty) + 0.5 ||(tw, th) - target||^2]
        + sum_rows BCE(objectness) + sum_pos BCE(classes)``, divided by the batch size,

where a row that is no object's but whose predicted box overlaps an object by more than
``ignore_iou`` is left out of the objectness term, and difficult objects (VOC's flag,
COCO's crowds) are never positives but do make rows ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from spikezip.data.detection import BOX, DIFFICULT, LABEL
from spikezip.detection.grid import CLS, OBJ, WH, XY, Grid


@dataclass
class Assignment:
    """Positive rows of a batch: ``batch [P]``, ``row [P]`` and their targets
    ``xy [P, 2]`` (in (0, 1)), ``wh [P, 2]`` (log-scales), ``label [P]``, ``weight [P]``."""

    batch: Tensor
    row: Tensor
    xy: Tensor
    wh: Tensor
    label: Tensor
    weight: Tensor


def _shape_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """``[K, A]`` IoU of boxes ``wh [K, 2]`` and anchors ``[A, 2]`` centred together."""
    inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def assign(grid: Grid, targets: Tensor) -> Assignment:
    """The positive rows of padded ``targets [B, M, 6]`` (non-difficult objects)."""
    device = targets.device
    real = (targets[..., LABEL] >= 0) & (targets[..., DIFFICULT] <= 0)
    batch, obj = real.nonzero(as_tuple=True)
    rows = targets[batch, obj]
    boxes = rows[:, BOX]
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-3)
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    anchors = [torch.tensor(a, dtype=wh.dtype) for h in grid.heads for a in h.anchors]
    which = _shape_iou(wh, torch.stack(anchors).to(device)).argmax(1)
    per_head = [len(h.anchors) for h in grid.heads]
    head = torch.bucketize(which, torch.tensor(per_head, device=device).cumsum(0), right=True)
    starts = torch.tensor([0, *per_head], device=device).cumsum(0)[head]
    anchor = which - starts
    stride = torch.tensor([h.stride for h in grid.heads], dtype=wh.dtype, device=device)[head]
    cell = (center / stride[:, None]).floor().long()
    index = torch.empty_like(batch)
    for h in range(len(grid.heads)):
        on = head == h
        side = grid.side(h)
        cx, cy = cell[on, 0].clamp(0, side - 1), cell[on, 1].clamp(0, side - 1)
        cell[on, 0], cell[on, 1] = cx, cy
        index[on] = grid.row(h, anchor[on], cx, cy)
    anchor_wh = torch.stack(anchors).to(device)[which]
    return Assignment(
        batch=batch,
        row=index,
        xy=(center / stride[:, None] - cell).clamp(1e-4, 1 - 1e-4),
        wh=(wh / anchor_wh).log(),
        label=rows[:, LABEL].long(),
        weight=2 - wh.prod(-1) / grid.image_size**2,
    )


def yolo_loss(grid: Grid, outputs: Tensor, targets: Tensor, ignore_iou: float = 0.5) -> Tensor:
    """YOLOv3's loss (module docstring) of raw ``outputs [B, N, 5 + C]`` against padded
    ``targets [B, M, 6]``; a scalar, summed over rows and averaged over the batch."""
    grid.check(outputs)
    batch_size = outputs.shape[0]
    fit = assign(grid, targets)
    positive = outputs[fit.batch, fit.row]  # [P, 5 + C]
    box = F.binary_cross_entropy_with_logits(positive[:, XY], fit.xy, reduction="none").sum(1)
    box = box + 0.5 * (positive[:, WH] - fit.wh).pow(2).sum(1)
    box_loss = (fit.weight * box).sum()
    onehot = F.one_hot(fit.label, outputs.shape[-1] - 5).to(outputs.dtype)
    cls_loss = F.binary_cross_entropy_with_logits(positive[:, CLS], onehot, reduction="sum")

    objectness = torch.zeros_like(outputs[..., OBJ])
    objectness[fit.batch, fit.row] = 1.0
    weight = 1.0 - _ignored(grid, outputs, targets, ignore_iou).to(outputs.dtype)
    weight[fit.batch, fit.row] = 1.0
    obj_loss = F.binary_cross_entropy_with_logits(
        outputs[..., OBJ], objectness, weight=weight, reduction="sum"
    )
    return (box_loss + cls_loss + obj_loss) / batch_size


@torch.no_grad()
def _ignored(grid: Grid, outputs: Tensor, targets: Tensor, ignore_iou: float) -> Tensor:
    """``[B, N]`` rows whose predicted box overlaps some object by more than ``ignore_iou``."""
    boxes = grid.boxes(outputs.detach())
    ignored = torch.zeros(outputs.shape[:2], dtype=torch.bool, device=outputs.device)
    for b in range(outputs.shape[0]):
        real = targets[b, :, LABEL] >= 0
        if real.any():
            best = box_iou(boxes[b], targets[b, real][:, BOX]).amax(1)
            ignored[b] = best > ignore_iou
    return ignored


def _bernoulli_kl(student: Tensor, teacher: Tensor) -> Tensor:
    """Elementwise ``KL(Bernoulli(sigmoid(teacher)) || Bernoulli(sigmoid(student)))``."""
    p = teacher.sigmoid()
    return p * (F.logsigmoid(teacher) - F.logsigmoid(student)) + (1 - p) * (
        F.logsigmoid(-teacher) - F.logsigmoid(-student)
    )


def yolo_distillation(outputs: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """How far a detector's raw ``outputs [B, N, 5 + C]`` are from a teacher's.

    Soft targets for detection: objectness and each class score are Bernoulli
    probabilities, so the student matches the teacher's (both logits divided by the
    temperature ``tau``, the KL times ``tau^2``, as in classification) on every row; the
    box of a row matters only where there is an object, so its terms (KL of the centre
    offsets, squared distance of the log-scales) and the class term are weighted by the
    teacher's objectness probability. Zero when the outputs are the teacher's; summed
    over rows and averaged over the batch, like :func:`yolo_loss`.
    """
    teacher = teacher.detach()
    tau = temperature
    presence = teacher[..., OBJ].sigmoid()
    obj = _bernoulli_kl(outputs[..., OBJ] / tau, teacher[..., OBJ] / tau) * tau**2
    cls = _bernoulli_kl(outputs[..., CLS] / tau, teacher[..., CLS] / tau).sum(-1) * tau**2
    box = _bernoulli_kl(outputs[..., XY], teacher[..., XY]).sum(-1)
    box = box + 0.5 * (outputs[..., WH] - teacher[..., WH]).pow(2).sum(-1)
    return (obj + presence * (cls + box)).sum() / outputs.shape[0]
