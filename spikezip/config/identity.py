"""A run directory's identity: the settings that shape its artifacts, and the refusal to
continue it with others."""

from __future__ import annotations

from spikezip.config.build import to_plain
from spikezip.config.schema import TrainConfig
from spikezip.settings import ConfigError

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
