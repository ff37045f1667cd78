"""Object detection: YOLO output decoding, loss, mAP, and the detection task."""
