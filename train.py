"""Train: teacher -> paths-ensemble training -> exact SNN, evaluated at every time-step.

python train.py                                  # MNIST-5k, small CNN, PET [8, 4, 2]
python train.py model=vgg16 data=cifar100 pet.levels=[8,4,2] trainer=gpu
python train.py -m sweep=alpha experiment=cifar100_resnet20
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup

setup()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.lit.pipeline import train

    summary = report_errors(lambda: train(cfg, HydraConfig.get().runtime.output_dir))
    # The QANN's score (accuracy, or a detector's mAP@0.5); None: a sweep's failed job.
    return summary.qann_score if summary else None


if __name__ == "__main__":
    main()
