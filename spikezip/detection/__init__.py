"""Object detection: YOLO output decoding, loss and mAP (its task:
:mod:`spikezip.tasks.detection`)."""
