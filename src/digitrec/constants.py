"""Facts about the data every module agrees on: image size, classes, normalisation.

Try: `python -c "from digitrec import constants as c; print(c.MNIST_MEAN, c.MNIST_STD)"`.
"""

IMAGE_SIZE = 28  # MNIST images are IMAGE_SIZE x IMAGE_SIZE, one channel
DIGIT_BOX = 20  # MNIST digits are scaled to fit this box, then centred by mass in IMAGE_SIZE
NUM_CLASSES = 10
LABELS = tuple(str(d) for d in range(NUM_CLASSES))
# A model may have one more output after the digits: "not one digit" (training/notdigit.py), which
# a segmentation piece holding two touching digits or a fragment is. Digit probabilities are the
# softmax of the first NUM_CLASSES logits (probabilities.digit_probabilities).
NOT_A_DIGIT = NUM_CLASSES

Box = tuple[int, int, int, int]  # where something is in an image: (x0, y0, x1, y1), end-exclusive, pixels

# Mean and standard deviation of the 60,000 training images' pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
