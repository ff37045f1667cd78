"""Train: teacher -> paths-ensemble training -> exact SNN, evaluated at every time-step.

python train.py                                  # MNIST-5k, small CNN, PET [8, 4, 2]
python train.py model=vgg16 data=cifar100 pet.levels=[8,4,2] trainer=gpu
python train.py -m sweep=alpha experiment=cifar100_resnet20
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup, show
from spikezip.distributed import is_rank_zero

setup()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.lit.pipeline import train

    run_dir = HydraConfig.get().runtime.output_dir
    report = report_errors(lambda: train(cfg, run_dir))
    if report is None:  # a sweep's failed job
        return None
    if is_rank_zero():  # under DDP: one summary, from rank 0
        show(f"Run finished: {run_dir}\n{report.summary(run_dir)}")
    # The QANN's score (accuracy, or a detector's mAP@0.5): what a sweep optimises.
    return report.qann_score


if __name__ == "__main__":
    main()
