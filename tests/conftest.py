"""Shared fixtures."""

import contextlib

import pytest


@pytest.fixture
def mock_cifar10(tmp_path):
  """A context manager: inside it, `tfds` serves `num` random CIFAR-10 examples per split.

  `tfds.testing.mock_data` takes split sizes from the dataset's metadata files, which the tfds
  package does not ship for cifar10, so they are written here first. Nothing is downloaded.
  """

  @contextlib.contextmanager
  def mock(num: int):
    from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
    meta_dir = tmp_path / "cifar10_metadata"
    builder = tfds.builder("cifar10", data_dir=str(meta_dir))
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name="cifar10",
                                             filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[num], num_bytes=0,
                            filename_template=template.replace(split=split))
        for split in ("train", "test")]))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    with tfds.testing.mock_data(num_examples=num, data_dir=str(meta_dir)):
      yield

  return mock
