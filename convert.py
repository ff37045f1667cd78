"""Convert a QANN to its SNN and prove the two equivalent: python convert.py qann=PATH."""

import hydra
from omegaconf import DictConfig

from spikezip.cli import report_errors, setup

setup()


@hydra.main(config_path="conf", config_name="convert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Lightning and the pipeline load only when a job runs, not for --help.
    from spikezip.conversion import convert_file

    report = report_errors(lambda: convert_file(cfg))
    if report is None:
        return
    if report["exact"]:
        print(f"equivalent: {report['equivalent']}; snn.pt written next to equivalence.json")
    else:  # a baseline: approximate by design
        print(
            f"{report['method']} SNN (approximate by design): agreement {report['agreement']:.4f}, "
            f"relative output difference {report['output_rel_diff']:.3g}; snn.pt written"
        )


if __name__ == "__main__":
    main()
