"""A run directory's identity: the settings that shape its artifacts, and the refusal to
continue it with others."""

from __future__ import annotations

from spikezip.config.build import to_plain
from spikezip.config.schema import TrainConfig
from spikezip.config.usage import flatten, unused_settings
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


IDENTITY_FORMAT = "spikezip-run/4"
# The run-identity keys a teacher depends on: runs that agree on them train the same one.
TEACHER_KEYS = ("format", "seed", "data.", "model.", "teacher.", "trainer.")


def run_identity(cfg: TrainConfig) -> dict:
    """Every setting that shapes a run directory's artifacts, as ``{dotted key: value}``;
    a setting the run does not use (:func:`spikezip.config.usage.unused_settings`) is left
    out, or recorded as the part of it that is used."""
    flat = flatten(to_plain(cfg))
    for unused in unused_settings(cfg):
        if unused.kept is None:
            flat.pop(unused.key, None)
        else:
            flat[unused.key] = unused.kept
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
    # A setting the run does not use was recorded by versions that did not know it.
    unused = {u.key for u in unused_settings(cfg) if u.kept is None}
    keys = (saved.keys() | current.keys()) - unused
    changed = sorted(k for k in keys if saved.get(k) != current.get(k))
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
