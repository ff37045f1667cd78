"""What the entry points (``train.py``, ``convert.py``, ``evaluate.py``) share: their
config schemas and help, and how they report a user's error.

A SpikeZIP error (a wrong setting, a missing dataset or file, a layer that cannot be
converted, a diverged training) is printed as one message, the last thing the user sees,
with exit code 1; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. In a multirun the
job fails (the other jobs go on) with the same message in its log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import OmegaConf

from spikezip.config import register_configs
from spikezip.errors import SpikeZIPError

T = TypeVar("T")
log = logging.getLogger("spikezip")


def report_errors(run: Callable[[], T]) -> T:
    """``run()``, with a SpikeZIP error printed as its message and exit code 1."""
    try:
        return run()
    except SpikeZIPError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("%s: %s", type(err).__name__, err)
            raise  # this job fails; Hydra runs the others and reports it
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)


def _group_options(*groups: str) -> str:
    """``  group: option, option, ...`` for each config group, as Hydra finds them."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return "\n".join(f"  {g}: {', '.join(sorted(loader.get_group_options(g)))}" for g in groups)


def setup() -> None:
    """Register the config schemas and the ``${spikezip.groups:...}`` help resolver."""
    register_configs()
    if not OmegaConf.has_resolver("spikezip.groups"):
        OmegaConf.register_new_resolver("spikezip.groups", _group_options)
