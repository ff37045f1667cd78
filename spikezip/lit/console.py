"""What Lightning prints during a run, once each and without its noise: its log records
go through the root logger only (under Hydra: the console and ``train.log``), its
advertisements and a deprecation it raises itself are dropped, and its model summary
leaves out the FLOPs it cannot count here."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

log = logging.getLogger(__name__)

# Records Lightning logs that are not about the run.
_NOISE = ("💡 Tip:",)  # the litlogger advertisement, on every Trainer


def _not_noise(record: logging.LogRecord) -> bool:
    return not str(record.getMessage()).startswith(_NOISE)


def quiet_lightning() -> None:
    """One copy of each Lightning line, none of its noise.

    Lightning adds its own console handlers (``lightning``, ``lightning.pytorch``,
    ``lightning.fabric``); under Hydra, whose handlers sit on the root logger, that
    printed every line twice. With a root handler configured they are removed and the
    records propagate to it; without one (the Python API) Lightning's own stay.
    """
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    # rank_zero_info logs through this logger; a filter on it sees the records first.
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_noise not in rank_zero.filters:
        rank_zero.addFilter(_not_noise)
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates: not ours
    # to fix, and not the user's.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class ModelTable(ModelSummary):
    """Lightning's model summary, logged (so it reaches ``train.log`` too), without its
    FLOPs column: Lightning counts FLOPs only by running a module's
    ``example_input_array``, which a PET model cannot have (a forward before training
    would initialise its Q-ReLU scales), so the table said "Total FLOPs: 0". The ANN's
    FLOPs per inference are in ``snn_eval.json`` (``energy.ann_flops``)."""

    @staticmethod
    def summarize(
        summary_data,
        total_parameters,
        trainable_parameters,
        model_size,
        total_training_modes,
        total_flops,
        **summarize_kwargs,
    ) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = _format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *columns,
        )
        lines = [line for line in table.splitlines() if not line.endswith("Total Flops")]
        log.info("\n%s", "\n".join(lines))
