"""Lightning wiring: the teacher and PET modules and the SNN conversion callback.

The only package of SpikeZIP that imports Lightning.
"""

from spikezip.lit.callbacks import SNNConversionCallback
from spikezip.lit.pet_module import PETModule
from spikezip.lit.teacher import TeacherModule
from spikezip.optim import OptimizerConfig

__all__ = ["OptimizerConfig", "PETModule", "SNNConversionCallback", "TeacherModule"]
