"""What the entry points (``train.py``, ``convert.py``, ``evaluate.py``) share: their
config schemas and help, and how they report a user's error.

A SpikeZIP error (a wrong setting, a missing dataset or file, a layer that cannot be
converted, a diverged training) is printed as one message, the last thing the user sees,
with exit code 1; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. In a multirun the
job fails (the other jobs go on) with the same message in its log.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from spikezip import compare
from spikezip.config import register_configs
from spikezip.distributed import is_rank_zero
from spikezip.errors import SpikeZIPError
from spikezip.io import FREE_SPACE, DiskFullError, write_json

T = TypeVar("T")
log = logging.getLogger("spikezip")


def report_errors(run: Callable[[], T]) -> T | None:
    """``run()``, with a SpikeZIP error printed as its message and exit code 1.

    In a multirun a failed job does not stop the sweep: its error (any error) goes to its
    log and to ``failed.json`` in its directory, the job returns None, and the sweep's
    summary (:class:`SweepSummary`) lists it and fails the command at the end.
    """
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        try:
            return run()
        except OSError as err:
            if err.errno != errno.ENOSPC or isinstance(err, SpikeZIPError):
                raise
            # A write outside spikezip.io (a log, a figure) on a full disk.
            where = f" to write {err.filename}" if err.filename else ""
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left on the device{where}; {FREE_SPACE}",
            ) from err
    except SpikeZIPError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" and not multirun:
            raise
        if multirun:
            _record_failure(err)
            return None
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:  # a bug: kept with its traceback; a sweep still goes on
        if not multirun:
            raise
        log.exception("this job failed")
        _record_failure(err)
        return None


def show(text: str) -> None:
    """Print a result for the user, and put it in the job's log file (``train.log``) too,
    unprefixed, as it was printed."""
    print(text, flush=True)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            if handler.stream is None:  # a handler opened lazily (delay=True)
                handler.stream = handler._open()
            handler.stream.write(text + "\n")
            handler.flush()


def _record_failure(err: BaseException) -> None:
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.hydra_config import HydraConfig

    log.error("%s: %s", type(err).__name__, err)
    error = {"error": f"{type(err).__name__}: {err}"}
    if is_rank_zero():
        write_json(error, Path(HydraConfig.get().runtime.output_dir) / compare.FAILED)


class SweepSummary(Callback):
    """Hydra callback: when a ``train.py`` multirun ends, summarise its jobs into the sweep
    directory (:func:`spikezip.compare.summarize`, failed jobs included), log the table and
    figures to W&B when the sweep used ``logger=wandb``, and fail the command if a job
    failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        # Hydra turns a callback's exception into a warning: exit with the error instead.
        try:
            rows = compare.summarize([sweep_dir], sweep_dir)
            log.info("comparison of %d runs: %s", len(rows), sweep_dir / "summary.md")
            logger = config.get("logger") or {}
            if logger.get("wandb"):
                mode = os.environ.get("WANDB_MODE") or str(logger.get("wandb_mode", "offline"))
                compare.log_to_wandb(sweep_dir, rows, str(logger.get("project", "spikezip")), mode)
        except Exception as err:
            log.exception("the sweep's summary failed")
            print(f"Error: the summary of the sweep in {sweep_dir} failed: {err}", file=sys.stderr)
            sys.exit(1)
        failed = [r for r in rows if r.get("status") != "ok"]
        if failed:
            names = "; ".join(f"{r['run']}: {r['error']}" for r in failed)
            print(
                f"Error: {len(failed)} of {len(rows)} jobs failed ({names}); the comparison "
                f"of all of them is in {sweep_dir / 'summary.md'}",
                file=sys.stderr,
            )
            sys.exit(1)


def _group_options(*groups: str) -> str:
    """``  group: option, option, ...`` for each config group, as Hydra finds them."""
    # Hydra loads only under the entry points (this module imports without it).
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return "\n".join(f"  {g}: {', '.join(sorted(loader.get_group_options(g)))}" for g in groups)


def setup() -> None:
    """Register the config schemas and the ``${spikezip.groups:...}`` help resolver."""
    register_configs()
    if not OmegaConf.has_resolver("spikezip.groups"):
        OmegaConf.register_new_resolver("spikezip.groups", _group_options)
