"""Reading MNIST-format idx files (numpy only): the format Fashion-MNIST ships in, and where.

An idx file is a big-endian header — two zero bytes, a type code, the number of dimensions, one
uint32 per dimension — followed by the array. Files may be gzip-compressed (`.gz`), as Debian's
`dataset-fashion-mnist` package and the original download ship them.
"""

import gzip
import os

import numpy as np

from dcrn_jax.errors import UserError

_UINT8 = 0x08
# Where Debian's `dataset-fashion-mnist` package puts the four Fashion-MNIST idx files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# The four files of an MNIST-format dataset, by TFDS split.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def fashion_dir(data_config) -> str:
  """The folder to read Fashion-MNIST idx files from: data.manual_dir, else Debian's folder."""
  return data_config.manual_dir or DEBIAN_FASHION_MNIST


def read_idx(path: str) -> np.ndarray:
  """The uint8 array stored in one idx file (raw or .gz); UserError if it is not one."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:  # gzip raises these for truncated or non-gzip files.
    raise UserError(f"Cannot read the idx file {path} ({e}); replace it with a good copy.") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UINT8:
    raise UserError(
        f"{path} is not a uint8 idx file (bad header); expected the MNIST-format files "
        f"{', '.join(n for pair in FILES.values() for n in pair)} (optionally .gz).")
  ndim = raw[3]
  header = 4 + 4 * ndim
  shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
  if len(shape) != ndim or len(raw) != header + int(np.prod(shape)):
    raise UserError(
        f"{path} is truncated or padded: its header says shape {shape} but it holds "
        f"{len(raw) - header} data bytes. Replace it with a complete copy.")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_file(directory: str, stem: str) -> str:
  """Path of `stem` or `stem.gz` in directory; UserError naming both if neither exists."""
  for name in (stem, stem + ".gz"):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  raise UserError(
      f"{stem}[.gz] is missing from {directory}. Point data.manual_dir at a folder holding the "
      "four MNIST-format idx files (on Debian/Ubuntu: `apt-get install dataset-fashion-mnist`, "
      "which installs them in /usr/share/datasets/fashion-mnist).")


def has_files(directory: str) -> bool:
  """True if directory holds all four idx files (raw or .gz)."""
  def present(stem):
    return any(os.path.isfile(os.path.join(directory, stem + ext)) for ext in ("", ".gz"))

  return bool(directory) and all(present(n) for pair in FILES.values() for n in pair)


def load_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 (N, 28, 28, 1) and labels int64 (N,) of split 'train' or 'test'."""
  images_stem, labels_stem = FILES[split]
  images = read_idx(find_file(directory, images_stem))
  labels = read_idx(find_file(directory, labels_stem))
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise UserError(
        f"The {split} idx files in {directory} do not match: images {images.shape}, labels "
        f"{labels.shape}; expected (N, rows, cols) images and N labels.")
  return images[..., None], labels.astype(np.int64)
