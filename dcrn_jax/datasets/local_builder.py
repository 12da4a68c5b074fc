"""What our TFDS builders share: they prepare from local files (nothing is downloaded)."""

import inspect
import os

from etils import epath

from dcrn_jax.data.tf_import import tfds


class LocalBuilder:
  """Mixin, listed first among a TFDS builder's bases."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup needs the `importlib_resources` backport, which pip installs only on
    # Python < 3.9 (tfds 4.9.10); the answer is the file that defines the builder either way.
    return epath.Path(os.path.abspath(inspect.getfile(cls)))

  def check_sources(self) -> None:
    """Raises UserError if the local files that preparing reads are missing (none by default).

    Called before preparing, so a user learns what to install before a partial write starts.
    """

  # TFDS prints "Downloading and preparing dataset ..." around preparation; nothing is
  # downloaded here, and dcrn_jax prints its own line saying what is prepared where.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass
