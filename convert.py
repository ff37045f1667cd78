"""Convert a QANN to its SNN and prove the two equivalent: python convert.py qann=PATH."""

import hydra
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup

setup()


@hydra.main(config_path="conf", config_name="convert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spikezip.conversion import convert_file

    report = report_errors(lambda: convert_file(cfg))
    if report is not None:
        print(f"equivalent: {report['equivalent']}; written next to equivalence.json: snn.pt")


if __name__ == "__main__":
    main()
