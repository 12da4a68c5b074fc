"""TFDS datasets served from random examples, for tests (conftest's mock_tfds fixture) and for
the training subprocesses of tests/kill_worker.py. Nothing is downloaded.

`tfds.testing.mock_data` takes split sizes from the dataset's metadata files, which the tfds
package does not ship for most datasets, so they are written first. Its examples follow the
real builder's features and come from a fixed seed: every process sees the same ones.
"""

import contextlib
import pathlib


@contextlib.contextmanager
def mock(name: str, num: int, meta_dir, splits=("train", "test")):
  """Inside it, `tfds` serves `num` random examples per split of `name`; the metadata is
  written under meta_dir (reused when it is there already)."""
  from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
  meta_dir = pathlib.Path(meta_dir)
  builder = tfds.builder(name, data_dir=str(meta_dir))
  template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                           filetype_suffix="tfrecord")
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[num], num_bytes=0,
                          filename_template=template.replace(split=split))
      for split in splits]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)
  with tfds.testing.mock_data(num_examples=num, data_dir=str(meta_dir)):
    yield
