"""The shape of the problem: 28x28 grey images of one digit, ten classes. A leaf module:
everything may import it, it imports nothing of digitnet's."""

SIDE = 28  # pixels per row and per column
IMAGE_PIXELS = SIDE * SIDE  # a flattened image
NUM_CLASSES = 10  # the digits 0-9
