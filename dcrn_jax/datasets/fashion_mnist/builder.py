"""TFDS `fashion_mnist` prepared from local idx files, so the real benchmark runs offline.

TFDS's own builder downloads the four idx files; this one reads them from a folder instead
(`data.manual_dir`, e.g. /usr/share/datasets/fashion-mnist from Debian's `dataset-fashion-mnist`)
and writes the very same dataset — TFDS's `fashion_mnist` features, version, splits and example
keys — into <data_dir>/fashion_mnist/<version>/. From then on `tfds.builder('fashion_mnist')`
reads it like a download.
"""

from dcrn_jax.data.tf_import import tf, tfds
from dcrn_jax.datasets.fashion_mnist import idx
from dcrn_jax.datasets.local_builder import LocalBuilder
from dcrn_jax.errors import UserError

NAME = "fashion_mnist"
# Appended to the error for an unprepared fashion_mnist that cannot be downloaded.
OFFLINE_HINT = (" Or prepare it offline from its idx files: `apt-get install "
                f"dataset-fashion-mnist` (files in {idx.DEBIAN_FASHION_MNIST}), or set "
                "data.manual_dir to a folder with them.")


class LocalFashionMNIST(LocalBuilder, tfds.image_classification.FashionMNIST,
                        skip_registration=True):
  """TFDS's FashionMNIST (features, version) with examples read from local idx files."""

  name = NAME

  def __init__(self, *, idx_dir: str, **kwargs):
    self._idx_dir = idx_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the files are local.
    return {split: self._generate_examples(split) for split in idx.FILES}

  def _generate_examples(self, split):  # pylint: disable=arguments-differ
    images, labels = idx.load_split(self._idx_dir, split)
    # The index as key, like TFDS's builder: the same keys give the same on-disk order.
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(label)}


def prepare(data_dir: str | None, idx_dir: str) -> None:
  """Writes fashion_mnist into data_dir (TFDS's default if None) from the idx files in idx_dir.

  Raises UserError (from `idx`) if the files are missing or malformed.
  """
  for split in idx.FILES:  # Check every file before the slow write starts.
    for stem in idx.FILES[split]:
      idx.find_file(idx_dir, stem)
  builder = LocalFashionMNIST(idx_dir=idx_dir, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def prepare_offline(data_config, builder) -> bool:
  """Prepares TFDS's unprepared fashion_mnist `builder` from local idx files; True if done.

  Only TFDS's current version can be written this way, and only if `idx.fashion_dir` holds the
  files (a data.manual_dir without them is a UserError saying which file is missing).
  """
  if str(builder.version) != str(LocalFashionMNIST.VERSION):
    return False
  source = idx.fashion_dir(data_config)
  if not idx.has_files(source):
    if data_config.manual_dir:  # Asked for explicitly: say what is wrong with it.
      for pair in idx.FILES.values():
        for stem in pair:
          idx.find_file(source, stem)
    return False
  print(f"Preparing fashion_mnist into {builder.data_dir_root} from the idx files in {source} "
        "(once; no download).", flush=True)
  try:
    prepare(data_config.data_dir or None, source)
  except (OSError, tf.errors.OpError) as e:
    raise UserError(
        f"Could not write fashion_mnist into {builder.data_dir_root} ({e}). Set data.data_dir "
        "to a writable folder with about 40 MB free.") from e
  return True
