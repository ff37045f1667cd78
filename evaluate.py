"""Evaluate an SNN at every time-step: python evaluate.py snn=PATH data=mnist5k."""

import sys

import hydra
from omegaconf import DictConfig

from spikezip.config import register_configs, snn_path_override

register_configs()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spikezip.workflows import evaluate_file

    summary = evaluate_file(cfg)
    acc = summary["snn_accuracy"]
    print(
        f"QANN {summary['qann_accuracy']:.4f}; SNN at T={len(acc)} {acc[-1]:.4f}; "
        f"agreement {summary['agreement']:.4f}; T_eq mean {summary['t_eq_mean']:.2f}"
    )


if __name__ == "__main__":
    sys.argv = snn_path_override(sys.argv)
    main()
