"""Convert a QANN to its SNN and prove the two equivalent: python convert.py qann=PATH."""

import hydra
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup, show

setup()


@hydra.main(config_path="conf", config_name="convert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.conversion import conversion_summary, convert_file, output_dir

    result = report_errors(lambda: convert_file(cfg))
    if result is not None:
        show(conversion_summary(result, output_dir(cfg)))


if __name__ == "__main__":
    main()
