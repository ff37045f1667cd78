"""SNNs out of SpikeZIP: the integer format a chip team can run (:mod:`.integer`, with the
NumPy reference simulator :mod:`.reference`)."""

from spikezip.export.integer import ExportError, export_integer

__all__ = ["ExportError", "export_integer"]
