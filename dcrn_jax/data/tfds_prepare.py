"""Preparing datasets without a download: our builders, and fashion_mnist from local idx files."""

from dcrn_jax.data import idx
from dcrn_jax.data.tf_import import tf, tfds
from dcrn_jax.errors import UserError

# Where Debian's `dataset-fashion-mnist` package puts the four idx files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def is_ours(name: str) -> bool:
  return name in ("moving_digits", "moving_fashion")


def _our_module(name):
  # Deferred: each module defines a TFDS builder class, registered on import.
  if name == "moving_digits":
    from dcrn_jax.data import moving_digits  # pylint: disable=g-import-not-at-top
    return moving_digits
  from dcrn_jax.data import moving_fashion  # pylint: disable=g-import-not-at-top
  return moving_fashion


def fashion_idx_dir(data_config) -> str:
  """The folder to read Fashion-MNIST idx files from: data.manual_dir, else Debian's folder."""
  return data_config.manual_dir or DEBIAN_FASHION_MNIST


def our_builder(data_config):
  """Our prepared builder for moving_digits / moving_fashion (preparing it once), else None."""
  if not is_ours(data_config.name):
    return None
  module = _our_module(data_config.name)
  builder = module.make_builder(data_config)
  if builder.is_prepared():
    return builder
  print(f"Preparing {data_config.name}/{builder.builder_config.name} into {builder.data_dir} "
        "(once per setting; no download).", flush=True)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except Exception as e:  # pylint: disable=broad-except
    # Several processes sharing one data dir all prepare; only the first rename wins.
    builder = module.make_builder(data_config)
    if builder.is_prepared():
      return builder
    if isinstance(e, (OSError, tf.errors.OpError)):
      raise UserError(
          f"Could not write {data_config.name} into {builder.data_dir} ({e}). Set "
          "data.data_dir to a writable folder with enough space.") from e
    raise
  return builder


def _base_name(name: str) -> str:
  return name.split("/")[0].split(":")[0]


def prepare_from_local_files(data_config, builder) -> bool:
  """Prepares an unprepared TFDS builder from local files when we know how; True if done.

  Known: fashion_mnist (its current version) from the idx files in `fashion_idx_dir`.
  """
  if _base_name(data_config.name) != "fashion_mnist":
    return False
  from dcrn_jax.data import fashion_mnist  # pylint: disable=g-import-not-at-top
  if str(builder.version) != str(fashion_mnist.LocalFashionMNIST.VERSION):
    return False
  source = fashion_idx_dir(data_config)
  if not idx.has_files(source):
    if data_config.manual_dir:  # Asked for explicitly: say what is wrong with it.
      for pair in idx.FILES.values():
        for stem in pair:
          idx.find_file(source, stem)
    return False
  print(f"Preparing fashion_mnist into {builder.data_dir_root} from the idx files in {source} "
        "(once; no download).", flush=True)
  try:
    fashion_mnist.prepare(data_config.data_dir or None, source)
  except (OSError, tf.errors.OpError) as e:
    raise UserError(
        f"Could not write fashion_mnist into {builder.data_dir_root} ({e}). Set data.data_dir "
        "to a writable folder with about 40 MB free.") from e
  return True


def local_hint(name: str) -> str:
  """A sentence on preparing `name` from local files, if we can ('' otherwise)."""
  if _base_name(name) == "fashion_mnist":
    return (f" Or prepare it offline from its idx files: `apt-get install dataset-fashion-mnist` "
            f"(files in {DEBIAN_FASHION_MNIST}), or set data.manual_dir to a folder with them.")
  return ""

