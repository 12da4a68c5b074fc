"""The `video_shards` TFDS builder: a video_folder decoded once into JPEG frame records.

`ensure(data_config)` makes the shards of a video_folder config ready (`python -m
dcrn_jax.prepare`, or the first run with data.video_cache=True):

  1. decode: every video of the layout's table (`video_layouts.resolve`, every split) into a work
     file of JPEG frames (`decode.py`), several files at a time, with a progress line; a killed
     preparation resumes with the videos not yet done; unreadable files are skipped and listed;
  2. write: TFDS's GeneratorBasedBuilder writes them as ArrayRecord shards, one record per
     FRAMES_PER_RECORD consecutive frames of a video (`images` JPEG, `label` with the class
     names, `video`, `first_frame`, `path`, `num_frames`, `fps`), in order: frame f of video v
     is in record first[v] + f // FRAMES_PER_RECORD of its split. So a clip reads the one to
     three records holding its frames, by index: nothing is scanned, a clip costs the same
     anywhere in a video, and a shuffled epoch needs no shuffle buffer of whole videos
     (TFRecord shards can only be read in order). Records of several frames, because reading an
     ArrayRecord record costs about 30 us plus 0.8 us per KiB (measured on this project's
     machine): 16 frames of a few KiB each keep both parts small. dataset_info.json versions it; metadata.json holds each split's videos
     (path, label, frames, size, fps, first record), the skipped files and the source's
     fingerprint.

Stored in <data.data_dir>/video_shards/<config>/1.0.0/, the config named by the source folder,
the layout fields and the stored frame size and JPEG quality; work files in
<data.data_dir>/downloads/video_shards/<config>/ until the write is done. Any TFDS reader loads
it: tfds.builder_from_directory(that folder), or tfds.builder('video_shards/<config>',
data_dir=...). A source folder that changed since (files added, removed, modified, relabelled)
is refused with what changed; `python -m dcrn_jax.prepare` rebuilds it.
"""

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil

import numpy as np

from dcrn_jax.media import video_layouts
from dcrn_jax.data.tf_import import tfds
from dcrn_jax.datasets.local_builder import LocalBuilder
from dcrn_jax.datasets.video_shards import decode
from dcrn_jax.errors import UserError

NAME = "video_shards"
VERSION = "1.0.0"
FRAMES_PER_RECORD = 16
_COLUMNS = ("path", "label", "num_frames", "height", "width", "fps", "decoded", "size",
            "mtime_ns", "first")


class VideoShardsConfig(tfds.core.BuilderConfig):
  """One source folder and layout at one frame size and JPEG quality; carries the decoded
  videos it writes."""

  def __init__(self, *, name: str, class_names, videos, metadata, description: str):
    super().__init__(name=name, description=description)
    self.class_names = tuple(class_names)
    self.videos = videos  # split -> list of (key, row dict), in table order.
    self.metadata = metadata


class VideoShards(LocalBuilder, tfds.core.GeneratorBasedBuilder):
  """Frames of a video folder as JPEG records of FRAMES_PER_RECORD frames, in video order."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): "First release."}

  def __init__(self, *, work_dir: str, **kwargs):
    self._work_dir = work_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self, description=c.description,
        features=tfds.features.FeaturesDict({
            "images": tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")),
            "label": tfds.features.ClassLabel(names=c.class_names),
            "video": tfds.features.Scalar(dtype=np.int32),
            "first_frame": tfds.features.Scalar(dtype=np.int32),
            "path": tfds.features.Text(),
            "num_frames": tfds.features.Scalar(dtype=np.int32),
            "fps": tfds.features.Scalar(dtype=np.float32),
        }),
        # Records stay in video order: `first` indexes them.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(c.metadata))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in self.builder_config.videos}

  def _generate_examples(self, split: str):
    videos = self.builder_config.videos[split]
    total = sum(_num_records(row["num_frames"]) for _, row in videos)
    # Keys spread over TFDS's 128-bit key space: with shuffling off TFDS sorts by key, and
    # keys 0, 1, 2, ... would all land in one of its buckets (the whole split in memory).
    spread = (1 << 127) // max(total, 1)
    record = 0
    for v, (key, row) in enumerate(videos):
      _, jpegs = decode.read_work(self._work_dir, key)
      for f in range(0, len(jpegs), FRAMES_PER_RECORD):
        yield record * spread, {"images": jpegs[f:f + FRAMES_PER_RECORD], "label": row["label"],
                                "video": v, "first_frame": f, "path": row["path"],
                                "num_frames": row["num_frames"], "fps": row["fps"]}
        record += 1


def _num_records(num_frames: int) -> int:
  return -(-num_frames // FRAMES_PER_RECORD)


def _root(data_config) -> str:
  return os.path.expanduser(data_config.data_dir or os.path.join("~", "tensorflow_datasets"))


def config_name(data_config) -> str:
  """<source folder>_<hash of the layout fields>_s<short side>_q<JPEG quality>."""
  d = data_config
  source = [os.path.abspath(d.video_dir), d.split_format,
            os.path.abspath(d.split_lists) if d.split_lists else "", d.split, d.eval_fraction,
            os.path.abspath(d.class_names_file) if d.class_names_file else "", d.train_split,
            d.eval_split]
  digest = hashlib.sha256(json.dumps(source).encode()).hexdigest()[:10]
  slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(os.path.abspath(d.video_dir)).lower())
  return f"{slug.strip('_')[:32] or 'videos'}_{digest}_s{short_side(d)}_q{d.jpeg_quality}"


def short_side(data_config) -> int:
  return data_config.resize_short or data_config.image_size


def dataset_dir(data_config) -> str:
  return os.path.join(_root(data_config), NAME, config_name(data_config), VERSION)


def _work_dir(data_config) -> str:
  return os.path.join(_root(data_config), "downloads", NAME, config_name(data_config))


def check_config(data_config) -> None:
  if not 1 <= data_config.jpeg_quality <= 100:
    raise UserError(f"data.jpeg_quality is {data_config.jpeg_quality}; use 1-100 (90 by "
                    "default; higher keeps more detail and takes more disk).")
  if data_config.prepare_workers < 0:
    raise UserError(f"data.prepare_workers is {data_config.prepare_workers}; use 0 (one per "
                    "CPU core) or more.")


def _source_rows(table) -> list[tuple]:
  """(relative path, size, mtime_ns, label, split) of every table row: what the shards
  depend on."""
  rows = []
  for path, label, split in zip(table.paths, table.labels, table.splits):
    stat = os.stat(path)
    rows.append((os.path.relpath(path, table.root), stat.st_size, stat.st_mtime_ns,
                 table.class_names[label], split))
  return rows


def _fingerprint(rows) -> str:
  return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()


def _changes(prepared_rows, rows) -> list[str]:
  """What differs between the rows the shards were made from and the folder's rows now."""
  before = {(r[0], r[4]): tuple(r[1:4]) for r in prepared_rows}
  now = {(r[0], r[4]): tuple(r[1:4]) for r in rows}
  added = sorted(f"{p} ({s})" for p, s in now.keys() - before.keys())
  removed = sorted(f"{p} ({s})" for p, s in before.keys() - now.keys())
  modified = sorted(f"{p} ({s})" for (p, s) in now.keys() & before.keys()
                    if now[(p, s)][:2] != before[(p, s)][:2])
  relabelled = sorted(f"{p} ({s})" for (p, s) in now.keys() & before.keys()
                      if now[(p, s)][2] != before[(p, s)][2])
  return [f"{len(items)} {what} (first: {video_layouts.first_few(items)})"
          for what, items in (("added", added), ("removed", removed),
                              ("modified", modified), ("relabelled", relabelled)) if items]


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Prepared shards: where they are and what they hold.

  Attributes:
    path: the dataset folder (<data_dir>/video_shards/<config>/1.0.0).
    class_names: label i is class_names[i].
    videos: split -> {column: tuple}, columns `_COLUMNS`, one entry per stored video in record
      order (path absolute, as the table had it; height/width of the source; first: the record
      holding its frame 0).
    frames_per_record: frame f of a video is in record first + f // frames_per_record.
    skipped: (path, reason) of the files that could not be decoded.
    fingerprint, source_rows: the source folder they were made from (see `_source_rows`).
  """

  path: str
  class_names: tuple[str, ...]
  videos: dict
  frames_per_record: int
  skipped: tuple[tuple[str, str], ...]
  fingerprint: str
  source_rows: tuple


def load(path: str) -> Prepared:
  metadata = tfds.core.MetadataDict()
  metadata.load_metadata(path)
  return Prepared(path=path, class_names=tuple(metadata["class_names"]),
                  videos={s: {c: tuple(v) for c, v in cols.items()}
                          for s, cols in metadata["videos"].items()},
                  frames_per_record=metadata["frames_per_record"],
                  skipped=tuple(tuple(x) for x in metadata["skipped"]),
                  fingerprint=metadata["fingerprint"],
                  source_rows=tuple(tuple(r) for r in metadata["source_rows"]))


def is_prepared(data_config) -> bool:
  return os.path.isfile(os.path.join(dataset_dir(data_config), "dataset_info.json"))


def ensure(data_config, *, rebuild: bool = False) -> Prepared:
  """The prepared shards of data_config, prepared first if they are not.

  Raises UserError if the source folder changed since they were prepared, unless `rebuild`
  (then they are prepared anew). When the source folder is gone, the shards are read as they
  are (a note says so).
  """
  check_config(data_config)
  path = dataset_dir(data_config)
  if is_prepared(data_config) and not os.path.isdir(data_config.video_dir):
    print(f"note: {data_config.video_dir} is not there; reading the video shards in {path} as "
          "they were prepared.", flush=True)
    return load(path)
  table = video_layouts.resolve(data_config)
  rows = _source_rows(table)
  if is_prepared(data_config):
    prepared = load(path)
    if prepared.fingerprint == _fingerprint(rows):
      return prepared
    changes = _changes(prepared.source_rows, rows)
    if not rebuild:
      raise UserError(
          f"{data_config.video_dir} changed since its video shards were prepared in {path} ("
          + "; ".join(changes) + "). Rebuild them with `python -m dcrn_jax.prepare "
          "--config=...` (same config), or read the videos directly with "
          "data.video_cache=False.")
    print(f"{data_config.video_dir} changed (" + "; ".join(changes) + "): rebuilding.",
          flush=True)
    shutil.rmtree(os.path.dirname(path))
  _prepare(data_config, table, rows)
  return load(path)


def _prepare(data_config, table, rows) -> None:
  work_dir = _work_dir(data_config)
  os.makedirs(work_dir, exist_ok=True)
  keys = [decode.work_key(p, r[1], r[2]) for p, r in zip(table.paths, rows)]
  outcomes = decode.decode_all(data_config, sorted(set(zip(table.paths, keys))), work_dir)
  videos, skipped = {}, []
  for path, key, label, split, row in zip(table.paths, keys, table.labels, table.splits, rows):
    outcome = outcomes[path]
    if isinstance(outcome, str):
      skipped.append((path, outcome))
      continue
    videos.setdefault(split, []).append((key, dict(
        outcome, path=path, label=label, size=row[1], mtime_ns=row[2])))
  if not videos:
    raise UserError(f"No readable video in {table.root} ({table.layout}); see the warnings "
                    "above.")
  columns = {}
  for split, entries in videos.items():
    firsts = np.cumsum([0] + [_num_records(r["num_frames"]) for _, r in entries])[:-1]
    columns[split] = {c: ([int(f) for f in firsts] if c == "first" else
                          [r[c] for _, r in entries]) for c in _COLUMNS}
  frames = sum(sum(c["num_frames"]) for c in columns.values())
  minutes = sum(n / f for c in columns.values() for n, f in zip(c["num_frames"], c["fps"])
                if f > 0) / 60
  description = (f"{data_config.video_dir} ({table.layout}) decoded once: frames scaled to a "
                 f"shorter side of {short_side(data_config)} px, JPEG quality "
                 f"{data_config.jpeg_quality}; {sum(len(v) for v in videos.values())} videos "
                 f"({frames} frames, {minutes:.1f} min), {len(skipped)} skipped.")
  metadata = {"class_names": list(table.class_names), "videos": columns,
              "frames_per_record": FRAMES_PER_RECORD,
              "skipped": [list(s) for s in skipped], "num_skipped": len(skipped),
              "fingerprint": _fingerprint(rows), "source_rows": [list(r) for r in rows],
              "source": {"video_dir": table.root, "layout": table.layout,
                         "resize_short": short_side(data_config),
                         "jpeg_quality": data_config.jpeg_quality}}
  config = VideoShardsConfig(name=config_name(data_config), class_names=table.class_names,
                             videos=videos, metadata=metadata, description=description)
  for stale in glob.glob(os.path.join(glob.escape(os.path.dirname(dataset_dir(data_config))),
                                     "incomplete.*")):
    shutil.rmtree(stale, ignore_errors=True)  # Left by a write that was killed.
  builder = VideoShards(config=config, data_dir=_root(data_config), work_dir=work_dir)
  print(f"writing {frames} frames into {builder.data_dir}", flush=True)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        file_format="array_record")
  except Exception as e:  # pylint: disable=broad-except
    if is_prepared(data_config):  # Another process sharing the data dir finished first.
      return
    if isinstance(e, OSError):
      raise UserError(f"Could not write the video shards into {builder.data_dir} ({e}). Set "
                      "data.data_dir to a writable folder with enough space.") from e
    raise
  shutil.rmtree(work_dir, ignore_errors=True)
  size = sum(os.path.getsize(os.path.join(builder.data_dir, f))
             for f in os.listdir(builder.data_dir))
  print(f"video shards ready: {description} {size / 2**20:.1f} MiB in {builder.data_dir}",
        flush=True)
