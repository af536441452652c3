"""Recognition, torch-free: model backends, the number decoder and the `Recognizer`."""
