"""The one module through which dcrn_jax imports TensorFlow and TFDS.

Importing it hides every GPU and TPU from TensorFlow before TensorFlow can touch them, so tf.data
never takes accelerator memory that JAX needs. Only TFDS-backed data modules import it, and only
when such a dataset is requested: `import dcrn_jax.data` stays free of TensorFlow.
"""

import tensorflow as tf
import tensorflow_datasets as tfds

for _device_type in ("GPU", "TPU"):
  try:
    tf.config.set_visible_devices([], _device_type)
  except (RuntimeError, ValueError):
    # RuntimeError: TensorFlow already initialised its devices (the user's own code used it
    # first); ValueError: a build that does not know this device type. Nothing to hide then.
    pass

__all__ = ["tf", "tfds"]
