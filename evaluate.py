"""Evaluate an SNN at every time-step: python evaluate.py snn.path=PATH data=mnist5k."""

import hydra
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup, show
from spikezip.distributed import is_rank_zero

setup()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.evaluation import evaluate_file, evaluation_dir

    report = report_errors(lambda: evaluate_file(cfg))
    if report is None or not is_rank_zero():  # under torchrun: one summary, from rank 0
        return
    show(report.summary(evaluation_dir(cfg)))


if __name__ == "__main__":
    main()
