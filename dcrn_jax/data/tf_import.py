"""The one module through which dcrn_jax imports TensorFlow and TFDS.

Importing it hides every GPU and TPU from TensorFlow before TensorFlow can touch them, so tf.data
never takes accelerator memory that JAX needs. Only TFDS-backed data modules import it, and only
when such a dataset is requested: `import dcrn_jax.data` stays free of TensorFlow.
"""

import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) is not for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top,wrong-import-position

for _device_type in ("GPU", "TPU"):
  try:
    tf.config.set_visible_devices([], _device_type)
  except (RuntimeError, ValueError):
    # RuntimeError: TensorFlow already initialised its devices (the user's own code used it
    # first); ValueError: a build that does not know this device type. Nothing to hide then.
    pass

# Our own one-line messages say what is being prepared; TFDS's bars are a screen of noise.
tfds.display_progress_bar(False)

__all__ = ["tf", "tfds"]
