"""The one module through which dcrn_jax imports TensorFlow and TFDS.

Importing it hides every GPU and TPU from TensorFlow before TensorFlow can touch them, so tf.data
never takes accelerator memory that JAX needs. Only TFDS-backed data modules import it, and only
when such a dataset is requested: `import dcrn_jax.data` stays free of TensorFlow.
"""

import contextlib
import os
import sys

# TensorFlow's C++ start-up chatter (CPU features, oneDNN notes) is not for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _c_stderr_hidden():
  """File descriptor 2 points at /dev/null inside the block (unless TF_CPP_MIN_LOG_LEVEL is 0,
  as `--verbose` sets it). TensorFlow 2.21 logs its oneDNN and CPU-feature notes with absl's C++
  logging before absl::InitializeLog(), which TF_CPP_MIN_LOG_LEVEL does not reach."""
  if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


with _c_stderr_hidden():  # A failing import still raises; its traceback prints after the block.
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
