"""The runtime input pipeline: `data.name` picks a source from one table, `SOURCES`.

  synthetic       random arrays in memory (no TensorFlow)
  video_folder    videos as distributed (split folders, class folders, UCF101/HMDB51/Kinetics/
                  MMAction2 lists: media/video_layouts.py), decoded with PyAV
  moving_digits, moving_fashion   our TFDS builders (dcrn_jax/datasets/), prepared offline
  moving_fashion_seq, moving_digits_seq   unlabelled sequences for forecasting, drawn in memory
  fashion_mnist   TFDS's, prepared offline from local idx files when it is not prepared
  anything else   a TFDS dataset by name: images (cifar10, mnist, ...) or videos (ucf101)

Importing this package does not import TensorFlow: a source module is imported only when its
dataset is requested, so the `synthetic` source runs on machines without TensorFlow.

Every source yields numpy batches of its native pixels, channels-last:
  train: endless {'inputs': uint8 (B, *input_shape), 'label': int32 (B,)}
  eval:  one pass of the same plus 'mask' float32 (B,), 1 for real rows and 0 for zero padding,
         and 'example_id' int32 (B,), the example's index in the whole eval split (-1 on
         padding). An example with several views (a video's num_test_clips x num_test_crops) is
         info.eval_views consecutive rows sharing its example_id.
Unlabelled sources (the *_seq sequences, TFDS moving_mnist) give no 'label'; they serve
config.task='forecast', which reads any clip source and ignores labels. Training and
evaluation ask for the pixels (`scaled=False`) and scale them on the device
(dcrn_jax/input_scaling.py, which predict and streaming use too); by default `train_batches`
and `eval_batches` hand out model inputs, float32 in [0, 1] or normalised by
data.normalize_mean/std (`preprocess.py`, the same arithmetic in numpy, for tools that look at
batches on the host; `files.py` turns video and image files into the pixels evaluation would
score). How the examples are divided among processes, for every
source: `common.process_share`.
"""

from collections.abc import Iterator
import dataclasses
import importlib
import json
import os
import types

import numpy as np

from dcrn_jax.data import preprocess
from dcrn_jax.data.info import DatasetInfo

__all__ = ["DatasetInfo", "get_info", "train_batches", "eval_batches", "write_label_map"]

LABEL_MAP_FILE = "label_map.json"
_TFDS = "dcrn_jax.data.tfds_source"


@dataclasses.dataclass(frozen=True)
class Source:
  """How a `data.name` is read.

  Attributes:
    module: the source module: get_info, train_batches and eval_batches, each taking the `data`
      config first (see this package's functions of the same names).
    builder: for a TFDS dataset of ours, the module in dcrn_jax/datasets whose
      make_builder(data_config) returns its TFDS builder; the TFDS source prepares it once.
    offline: for a TFDS dataset of TFDS's own that we can also write from local files, the
      module whose prepare_offline(data_config, builder) -> bool does that, and whose
      OFFLINE_HINT sentence says how when it cannot.
  """

  module: str
  builder: str = ""
  offline: str = ""


# The one table of dataset names. A name not in it is read as a TFDS dataset (`_ANY_TFDS`).
SOURCES = {
    "synthetic": Source("dcrn_jax.data.synthetic"),
    "video_folder": Source("dcrn_jax.data.video_folder"),
    "moving_digits": Source(_TFDS, builder="dcrn_jax.datasets.moving_digits.builder"),
    "moving_fashion": Source(_TFDS, builder="dcrn_jax.datasets.moving_fashion.builder"),
    "fashion_mnist": Source(_TFDS, offline="dcrn_jax.datasets.fashion_mnist.builder"),
    # Unlabelled sequences for config.task='forecast', drawn in memory (dcrn_jax/data/sequences.py).
    "moving_fashion_seq": Source("dcrn_jax.data.sequences"),
    "moving_digits_seq": Source("dcrn_jax.data.sequences"),
}
_ANY_TFDS = Source(_TFDS)


def lookup(name: str) -> Source:
  """The table's entry for data.name; a name it lacks is a TFDS dataset.

  A TFDS name may carry a '/config' or ':version' part; it then matches the entry of its base
  name if that entry is TFDS's own dataset (no `builder`: ours take their settings from the
  `data` fields, not from the name).
  """
  if name in SOURCES:
    return SOURCES[name]
  entry = SOURCES.get(name.split("/")[0].split(":")[0])
  if entry is not None and entry.module == _TFDS and not entry.builder:
    return entry
  return _ANY_TFDS


def names(*, ours: bool = False) -> tuple[str, ...]:
  """The names in the table, sorted (ours=True: only our TFDS builders)."""
  return tuple(sorted(n for n, s in SOURCES.items() if s.builder or not ours))


def load(module: str) -> types.ModuleType:
  """Imports a module named in the table (source modules import TensorFlow only when used)."""
  return importlib.import_module(module)


def _source(data_config) -> types.ModuleType:
  return load(lookup(data_config.name).module)


def get_info(data_config) -> DatasetInfo:
  """Shapes, sizes and class names of the configured dataset.

  Prepares our datasets (and fashion_mnist from local idx files) first if this setting is not
  yet in data.data_dir, printing a line saying so; raises UserError for unknown names and TFDS
  datasets that are not prepared and cannot be downloaded.
  """
  return _source(data_config).get_info(data_config)


def _scaled(batches, data_config):
  for batch in batches:
    yield dict(batch, inputs=preprocess.to_model_input(batch["inputs"], data_config))


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0, process_count: int = 1,
                  scaled: bool = True) -> Iterator[dict[str, np.ndarray]]:
  """Endless training batches of this process's share of data.train_split.

  Args:
    data_config: the `data` sub-config.
    local_batch_size: rows per batch on this process.
    seed: the order depends only on (seed, epoch); each epoch is reshuffled.
    start_step: the first batch is batch number start_step of the start_step=0 stream.
    process_index, process_count: each process reads a disjoint, equal share of the split
      (`common.process_share`).
    scaled: True: 'inputs' are model inputs, float32 in [0, 1] (normalised when
      data.normalize_mean/std are set); False: the source's pixels, uint8 (train.py scales
      them on the device, with the same arithmetic).

  Yields:
    {'inputs': float32 or uint8 (local_batch_size, *input_shape),
     'label': int32 (local_batch_size,)}.
  """
  batches = _source(data_config).train_batches(
      data_config, local_batch_size=local_batch_size, seed=seed, start_step=start_step,
      process_index=process_index, process_count=process_count)
  return _scaled(batches, data_config) if scaled else batches


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1, scaled: bool = True) -> Iterator[dict[str, np.ndarray]]:
  """One unshuffled pass over this process's share of data.eval_split.

  Every process yields the same number of batches, each of exactly local_batch_size rows; over
  all processes every eval example appears exactly once with mask 1 (`common.process_share`).

  Yields:
    {'inputs': float32 or uint8 (local_batch_size, *input_shape) (see `train_batches`'s
     `scaled`), 'label': int32 (local_batch_size,), 'mask': float32 (local_batch_size,),
     'example_id': int32 (local_batch_size,)}; see this module's docstring.
  """
  batches = _source(data_config).eval_batches(
      data_config, local_batch_size=local_batch_size, process_index=process_index,
      process_count=process_count)
  return _scaled(batches, data_config) if scaled else batches


# A split on the device (dcrn_jax/feeding.py): its pixels read once, then only row indices.
def resident_reason(data_config, *, train: bool) -> str | None:
  """None if the split (train or eval) can live on the device; else why not, in words."""
  source = _source(data_config)
  if not hasattr(source, "resident_reason"):
    return (f"the {data_config.name!r} source ({lookup(data_config.name).module}) cannot be "
            "device-resident")
  return source.resident_reason(data_config, train=train)


def split_pixels(data_config, *, train: bool, start: int, stop: int) -> dict[str, np.ndarray]:
  """Rows [start, stop) of the train or eval split, in the split's stored order:
  {'inputs': uint8 (stop - start, *input_shape), 'label': int32 (stop - start,)} ('label' only
  for labelled sources)."""
  return _source(data_config).split_pixels(data_config, train=train, start=start, stop=stop)


def train_indices(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'index': int32 (local_batch_size,)}: the rows of the train split that
  `train_batches` with the same arguments yields, batch for batch (only for splits that can
  be resident: `resident_reason`)."""
  return _source(data_config).train_indices(
      data_config, local_batch_size=local_batch_size, seed=seed, start_step=start_step,
      process_index=process_index, process_count=process_count)


def eval_indices(*, num_examples: int, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """`eval_batches` of a resident eval split of num_examples one-view examples: 'index' in place
  of 'inputs' and 'label' (`common.eval_index_batches`: the same rule for every source, so no
  config)."""
  from dcrn_jax.data import common  # pylint: disable=g-import-not-at-top
  return common.eval_index_batches(num_examples, local_batch_size=local_batch_size,
                                   process_index=process_index, process_count=process_count)


def write_label_map(info: DatasetInfo, workdir: str) -> str:
  """Writes WORKDIR/label_map.json, {"0": class name, ...}, and returns its path.

  Call it on process 0 once the workdir exists; it replaces the file atomically.
  """
  path = os.path.join(workdir, LABEL_MAP_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump({str(i): name for i, name in enumerate(info.class_names)}, f, indent=1)
  os.replace(tmp, path)
  return path
