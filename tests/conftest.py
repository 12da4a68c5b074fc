"""Shared fixtures."""

import contextlib

import pytest


@pytest.fixture
def mock_tfds(tmp_path):
  """A context manager: inside it, `tfds` serves `num` random examples per split of `name`.

  `tfds.testing.mock_data` takes split sizes from the dataset's metadata files, which the tfds
  package does not ship for most datasets, so they are written here first. Nothing is
  downloaded; examples follow the real builder's features.
  """

  @contextlib.contextmanager
  def mock(name: str, num: int, splits=("train", "test")):
    from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
    meta_dir = tmp_path / f"{name}_metadata"
    builder = tfds.builder(name, data_dir=str(meta_dir))
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                             filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[num], num_bytes=0,
                            filename_template=template.replace(split=split))
        for split in splits]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    with tfds.testing.mock_data(num_examples=num, data_dir=str(meta_dir)):
      yield

  return mock


@pytest.fixture
def mock_cifar10(mock_tfds):
  """mock_tfds for cifar10: a context manager serving `num` random examples per split."""
  return lambda num: mock_tfds("cifar10", num)


def write_idx(path, array):
  """Writes a uint8 array as an MNIST-format idx file (gzip-compressed if path ends in .gz)."""
  import gzip  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


@pytest.fixture
def fake_fashion_idx(tmp_path):
  """A folder with the four Fashion-MNIST idx files holding `num` (train, test) random images.

  Returns make(num_train, num_test) -> (folder, {'train': (images, labels), 'test': ...}).
  Every image is distinct (its first pixels spell its split and index); labels cycle 0..9.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  def make(num_train, num_test):
    folder = tmp_path / "fashion_idx"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # Raw and .gz both.
    for s, (split, num) in enumerate((("train", num_train), ("test", num_test))):
      images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
      images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = s, np.arange(num) // 256, np.arange(num)
      labels = (np.arange(num) % 10).astype(np.uint8)
      write_idx(folder / names[split][0], images)
      write_idx(folder / names[split][1], labels)
      arrays[split] = (images, labels)
    return str(folder), arrays

  return make
