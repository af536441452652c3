"""Facts about the data every module agrees on: image size, classes, normalisation.

Try: `python -c "from digitrec import constants as c; print(c.MNIST_MEAN, c.MNIST_STD)"`.
"""

IMAGE_SIZE = 28  # MNIST images are IMAGE_SIZE x IMAGE_SIZE, one channel
DIGIT_BOX = 20  # MNIST digits are scaled to fit this box, then centred by mass in IMAGE_SIZE
NUM_CLASSES = 10
LABELS = tuple(str(d) for d in range(NUM_CLASSES))
# A model may have outputs after the digits. "Not one digit" (training/notdigit.py): a segmentation
# piece holding two touching digits or a fragment. "Not a digit" (training/nondigit.py): a letter,
# sign, shape or scribble. Digit probabilities are the softmax of the first NUM_CLASSES logits
# (probabilities.digit_probabilities).
NOT_ONE_DIGIT = NUM_CLASSES
NON_DIGIT = NUM_CLASSES + 1
OUTPUT_COUNTS = (NUM_CLASSES, NOT_ONE_DIGIT + 1, NON_DIGIT + 1)  # the output layouts a model may have

Box = tuple[int, int, int, int]  # where something is in an image: (x0, y0, x1, y1), end-exclusive, pixels

# Mean and standard deviation of the 60,000 training images' pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
