"""Images to digits' geometry, torch-free: decode, ink map, MNIST format, presence, segmentation."""
