"""Lightning wiring: the teacher and PET modules, the SNN conversion callback, the pipeline.

The only package of SpikeZIP that imports Lightning.
"""

from spikezip.lit.callbacks import SNNConversionCallback
from spikezip.lit.pet_module import PETModule
from spikezip.lit.teacher import TeacherModule

__all__ = ["PETModule", "SNNConversionCallback", "TeacherModule"]
