"""Evaluate an SNN at every time-step: python evaluate.py snn.path=PATH data=mnist5k."""

import hydra
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup
from spikezip.distributed import is_rank_zero

setup()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.evaluation import evaluate_file

    summary = report_errors(lambda: evaluate_file(cfg))
    if summary is None or not is_rank_zero():  # under torchrun: one summary, from rank 0
        return
    acc, t_eq = summary["snn_accuracy"], summary["t_eq_mean"]
    print(
        f"QANN {summary['qann_accuracy']:.4f}; SNN at T={len(acc)} {acc[-1]:.4f}; "
        f"agreement {summary['agreement']:.4f}; T_eq mean "
        + (f"{t_eq:.2f}" if t_eq is not None else "- (no sample settled)")
    )


if __name__ == "__main__":
    main()
