"""Convert a QANN to its SNN and prove the two equivalent: python convert.py qann=PATH."""

import hydra
from omegaconf import DictConfig

from spikezip.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="convert", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from spikezip.config import ConfigError
    from spikezip.snn import ENCODINGS
    from spikezip.workflows import convert_file

    if cfg.encoding not in ENCODINGS:
        raise ConfigError(f"encoding={cfg.encoding!r} is not valid; choose one of {ENCODINGS}")
    report = convert_file(
        cfg.qann, cfg.out_dir, encoding=cfg.encoding, max_timesteps=cfg.max_timesteps
    )
    print(f"equivalent: {report['equivalent']}; snn.pt written next to the report")


if __name__ == "__main__":
    main()
