"""Data for the demos and tests, generated or read locally (no downloads).

- :func:`digit_glyphs`, :func:`digit_images`: digits rendered from
  matplotlib's fonts with handwriting-like variation, an MNIST stand-in.
- :func:`load_mnist`: real MNIST from IDX or ``.npz`` files, as Keras loads it.
- :func:`moving_digits`, :func:`iter_moving_digits`: Moving MNIST-style
  sequences (Srivastava et al. 2015; Shi et al. 2015) for ConvLSTM.
- :func:`sequence_digits`: one drifting digit per sequence, labelled by its
  class, for CNN-LSTM sequence classification.
- :func:`space_to_depth`, :func:`depth_to_space`: frames to patches and back.
"""

from numlstm.data.glyphs import digit_glyphs, digit_images
from numlstm.data.mnist import load_mnist
from numlstm.data.moving import iter_moving_digits, moving_digits, sequence_digits
from numlstm.data.patches import depth_to_space, space_to_depth

__all__ = [
    "digit_glyphs",
    "digit_images",
    "load_mnist",
    "moving_digits",
    "iter_moving_digits",
    "sequence_digits",
    "space_to_depth",
    "depth_to_space",
]
