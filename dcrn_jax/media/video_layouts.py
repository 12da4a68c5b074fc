"""Every way a video dataset is laid out on disk -> one table of (file, label, split).

`resolve(data_config)` is the only place that knows layouts; the video_folder source and the
preparation of video shards both read its `VideoTable` and nothing else. Layouts
(data.split_format):

  folders       <video_dir>/<split>/<class>/*  (class names: the train split's sorted folders)
                or, with data.eval_fraction > 0, <video_dir>/<class>/* split by a hash
  ucf101, hmdb51, kinetics_csv, list
                the split lists in data.split_lists, read by `video_lists`

The hash split puts a file in the eval split when a hash of its relative path (its group's,
for UCF101-style `_gNN_` names) falls below eval_fraction: the same on every process and run,
and adding or removing a file moves no other file. Problems are reported once per process, each
with a count and the first few paths: missing files (all missing is an error), files on disk in
no split, duplicate entries, unknown class names (an error, from the readers).
"""

import collections
import dataclasses
import functools
import hashlib
import os
import sys

import numpy as np

from dcrn_jax.media import video_lists
from dcrn_jax.media.video_files import EXTENSIONS
from dcrn_jax.media.video_lists import first_few
from dcrn_jax.errors import UserError

FORMATS = ("folders", "ucf101", "hmdb51", "kinetics_csv", "list")


@dataclasses.dataclass(frozen=True)
class VideoTable:
  """The videos of a dataset, one row per file, sorted by split, label, then path.

  Attributes:
    root: data.video_dir.
    paths: absolute path per row.
    labels: class index per row.
    splits: split name per row.
    class_names: label i is class_names[i], in the order the layout defines.
    layout: how the table was made, for messages ("ucf101 split 1", ...).
  """

  root: str
  paths: tuple[str, ...]
  labels: tuple[int, ...]
  splits: tuple[str, ...]
  class_names: tuple[str, ...]
  layout: str

  def split_names(self) -> tuple[str, ...]:
    return tuple(sorted(set(self.splits)))

  def rows(self, split: str) -> np.ndarray:
    """int64 indices of the split's rows; UserError naming the splits there are if none."""
    rows = np.flatnonzero(np.asarray(self.splits, dtype=object) == split)
    if not len(rows):
      raise UserError(f"The videos in {self.root} ({self.layout}) have no split {split!r}; "
                      f"splits: {', '.join(self.split_names()) or 'none'}. Set data.train_split "
                      "and data.eval_split to two of them.")
    return rows


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


def _note(message: str) -> None:
  print(message, flush=True)


def check_config(data_config) -> None:
  """UserError for layout fields no layout can honour."""
  d = data_config
  if not d.video_dir:
    raise UserError("data.name='video_folder' needs data.video_dir: the folder holding the "
                    "videos (<split>/<class>/*.mp4, <class>/*.mp4 with data.eval_fraction, or "
                    "the files a split list names).")
  if d.split_format not in FORMATS:
    raise UserError(f"data.split_format is {d.split_format!r}; use one of {', '.join(FORMATS)}.")
  if not 0.0 <= d.eval_fraction < 1.0:
    raise UserError(f"data.eval_fraction is {d.eval_fraction}; it must be in (0, 1) (e.g. 0.2), "
                    "or 0 to read <video_dir>/<split>/<class>/ folders.")
  if d.eval_fraction > 0 and d.split_format != "folders":
    raise UserError(f"data.eval_fraction splits class folders; with data.split_format="
                    f"{d.split_format!r} the lists define the splits. Set one or the other.")
  if d.split_format != "folders" and not d.split_lists:
    raise UserError(f"data.split_format={d.split_format!r} needs data.split_lists: the "
                    + ("folder of classInd.txt and the train/test lists"
                       if d.split_format == "ucf101" else "split list file(s)") + ".")
  if d.class_names_file and d.split_format != "list":
    raise UserError("data.class_names_file names the classes of data.split_format='list'; "
                    f"{d.split_format!r} takes its class names from its own files.")
  if d.train_split == d.eval_split:
    raise UserError(f"data.train_split and data.eval_split are both {d.train_split!r}; "
                    "evaluating on the training videos says nothing. Use two splits.")
  if not os.path.isdir(d.video_dir):
    raise UserError(f"data.video_dir={d.video_dir!r} is not a folder.")


def _walk(root: str) -> tuple[tuple[str, int, int], ...]:
  """(relative path, size, mtime_ns) of every video file under root, sorted: what a table
  depends on besides the config."""
  found = []
  for folder, dirs, files in os.walk(root, followlinks=True):
    dirs.sort()
    for name in files:
      if name.lower().endswith(EXTENSIONS):
        path = os.path.join(folder, name)
        stat = os.stat(path)
        found.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
  return tuple(sorted(found))


def _list_stats(data_config) -> tuple:
  """(path, size, mtime) of the list files, so an edited list resolves anew."""
  spec = data_config.split_lists
  if not spec:
    return ()
  paths = [spec.replace("{split}", s) for s in (data_config.train_split, data_config.eval_split)]
  if os.path.isdir(spec):
    paths = [os.path.join(spec, n) for n in sorted(os.listdir(spec))]
  stats = []
  for p in paths:
    if os.path.isfile(p):
      s = os.stat(p)
      stats.append((p, s.st_size, s.st_mtime_ns))
  return tuple(stats)


def resolve(data_config) -> VideoTable:
  """The table of data_config's videos (checked, problems reported once per process)."""
  check_config(data_config)
  fields = _Fields(**{f.name: data_config[f.name] for f in dataclasses.fields(_Fields)})
  return _resolve(dataclasses.replace(fields, video_dir=os.path.abspath(fields.video_dir)),
                  _walk(data_config.video_dir), _list_stats(data_config))


@dataclasses.dataclass(frozen=True)
class _Fields:
  """The `data` fields a table depends on (hashable: the cache key)."""

  video_dir: str
  split_format: str
  split_lists: str
  split: int
  eval_fraction: float
  class_names_file: str
  train_split: str
  eval_split: str


@functools.lru_cache(maxsize=8)
def _resolve(fields: _Fields, files, list_stats) -> VideoTable:
  """Cached on the files' and lists' sizes and times too, so get_info and the pipelines of one
  process resolve (and report) once, and a changed folder resolves anew."""
  del list_stats  # Part of the cache key only.
  return _build(fields, files)


def _build(d: _Fields, files) -> VideoTable:
  relpaths = tuple(f for f, _, _ in files)
  if d.split_format == "folders" and d.eval_fraction > 0:
    listed, layout = _hash_split(d, relpaths), f"class folders, eval_fraction={d.eval_fraction}"
  elif d.split_format == "folders":
    listed, layout = _split_folders(d, relpaths), "<split>/<class>/ folders"
  elif d.split_format == "ucf101":
    listed, layout = video_lists.read_ucf101(d), f"ucf101 split {d.split}"
  elif d.split_format == "hmdb51":
    listed, layout = video_lists.read_hmdb51(d), f"hmdb51 split {d.split}"
  elif d.split_format == "kinetics_csv":
    listed, layout = video_lists.read_kinetics_csv(d, relpaths), "kinetics_csv"
  else:
    listed, layout = video_lists.read_list(d), "list"
  table = _check_entries(d, listed, relpaths, layout)
  for note in listed.notes:
    _note(f"note: {note}.")
  _summary(table, d.eval_fraction > 0)
  return table


def _split_folders(d, relpaths) -> video_lists.Listed:
  """<split>/<class>/file entries of the train and eval split folders."""
  by_split = collections.defaultdict(list)
  for rel in relpaths:
    parts = rel.split(os.sep)
    if len(parts) == 3:
      by_split[parts[0]].append(rel)
  for split in (d.train_split, d.eval_split):
    folder = os.path.join(d.video_dir, split)
    if not os.path.isdir(folder):
      found = sorted(e.name for e in os.scandir(d.video_dir) if e.is_dir())
      raise UserError(
          f"The video folder {folder} does not exist (found in {d.video_dir}: "
          f"{found or 'nothing'}). Expected <data.video_dir>/<split>/<class_name>/*.mp4 for "
          "data.train_split and data.eval_split; for class folders without splits set "
          "data.eval_fraction (e.g. 0.2), for split lists data.split_format.")
  train_dir = os.path.join(d.video_dir, d.train_split)
  names = tuple(sorted(e.name for e in os.scandir(train_dir) if e.is_dir()))
  if not names:
    raise UserError(f"{train_dir} has no class folders; put videos in "
                    f"{train_dir}/<class_name>/*.mp4 (or .avi, .mkv, .webm).")
  eval_dir = os.path.join(d.video_dir, d.eval_split)
  unknown = sorted({e.name for e in os.scandir(eval_dir) if e.is_dir()} - set(names))
  if unknown:
    raise UserError(f"{eval_dir} has class folders {unknown} that the train split lacks; "
                    "every eval class needs train videos (the model has one output per class).")
  for name in names:
    if not any(r.split(os.sep)[:2] == [d.train_split, name] for r in by_split[d.train_split]):
      _warn(f"class folder {os.path.join(train_dir, name)} has no video file")
  index = {name: i for i, name in enumerate(names)}
  entries = tuple(video_lists.Entry(rel, index[rel.split(os.sep)[1]], split, rel)
                  for split in (d.train_split, d.eval_split) for rel in by_split[split]
                  if rel.split(os.sep)[1] in index)
  return video_lists.Listed(names, entries)


def hash_fraction(key: str) -> float:
  """A number in [0, 1) that depends on `key` only (the same on every machine and run)."""
  digest = hashlib.sha256(key.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def _hash_split(d, relpaths) -> video_lists.Listed:
  """<class>/file entries; a file goes to the eval split when its group's hash < eval_fraction."""
  splits_inside = [s for s in (d.train_split, d.eval_split)
                   if os.path.isdir(os.path.join(d.video_dir, s))]
  if len(splits_inside) == 2:
    raise UserError(f"{d.video_dir} holds {'/'.join(splits_inside)} folders: it is already split. "
                    "Set data.eval_fraction=0 to use them, or point data.video_dir at a folder "
                    "of class folders.")
  names = tuple(sorted({r.split(os.sep)[0] for r in relpaths if len(r.split(os.sep)) == 2}))
  if not names:
    raise UserError(f"{d.video_dir} has no class folders with videos; with data.eval_fraction "
                    "the layout is <data.video_dir>/<class_name>/*.mp4.")
  index = {name: i for i, name in enumerate(names)}
  entries = []
  for rel in relpaths:
    parts = rel.split(os.sep)
    if len(parts) == 2:
      evaluated = hash_fraction(video_lists.group_key(rel)) < d.eval_fraction
      entries.append(video_lists.Entry(rel, index[parts[0]],
                                       d.eval_split if evaluated else d.train_split, rel))
  return video_lists.Listed(names, tuple(entries))


def _check_entries(d, listed: video_lists.Listed, relpaths, layout) -> VideoTable:
  """Entries -> table: missing files, duplicates and files in no split reported."""
  on_disk = set(relpaths)
  root = os.path.abspath(d.video_dir)
  seen, missing, duplicates, rows = {}, [], [], []
  for e in listed.entries:
    rel = os.path.normpath(e.path)
    if (rel, e.split) in seen:
      duplicates.append(f"{e.path} ({e.where}, first at {seen[(rel, e.split)]})")
      continue
    seen[(rel, e.split)] = e.where
    if rel in on_disk or (os.path.isabs(rel) and os.path.isfile(rel)):
      rows.append((e.split, e.label, os.path.join(root, rel)))
    else:
      missing.append(e.path)
  if not listed.entries:
    raise UserError(f"No video file in {d.video_dir} ({layout}): expected *"
                    + ", *".join(EXTENSIONS) + " files.")
  if not rows:
    raise UserError(f"None of the {len(listed.entries)} videos listed ({layout}) exists "
                    f"under data.video_dir={d.video_dir} (first: {first_few(missing)}). Point "
                    "data.video_dir at the folder the list paths are relative to.")
  if missing:
    _warn(f"{len(missing)} of {len(listed.entries)} listed videos do not exist under "
          f"{d.video_dir} and are left out (first: {first_few(missing)})")
  if duplicates:
    _warn(f"{len(duplicates)} duplicate entries left out: {first_few(duplicates)}")
  by_path = collections.defaultdict(set)
  for split, _, path in rows:
    by_path[path].add(split)
  both = [p for p, s in by_path.items() if d.train_split in s and d.eval_split in s]
  if both:
    _warn(f"{len(both)} videos are in both {d.train_split!r} and {d.eval_split!r}; the eval "
          f"score then measures memory (first: {first_few(both)})")
  unlisted = [r for r in relpaths if os.path.join(root, r) not in by_path]
  if unlisted and not (d.split_format == "folders" and d.eval_fraction == 0):
    _note(f"note: {len(unlisted)} video files under {d.video_dir} are in no split of "
          f"{layout} (first: {first_few(unlisted)}).")
  rows.sort()
  splits, labels, paths = zip(*rows)
  return VideoTable(root=root, paths=paths, labels=labels, splits=splits,
                    class_names=listed.class_names, layout=layout)


def _summary(table: VideoTable, per_class: bool) -> None:
  """One line of split sizes; with a hash split also the per-class counts."""
  counts = collections.Counter(zip(table.splits, table.labels))
  sizes = collections.Counter(table.splits)
  _note(f"videos in {table.root} ({table.layout}): "
        + ", ".join(f"{s} {sizes[s]}" for s in table.split_names())
        + f"; {len(table.class_names)} classes.")
  if per_class:
    names = table.split_names()
    _note("  per class (" + "/".join(names) + "): " + ", ".join(
        f"{c} " + "/".join(str(counts[(s, i)]) for s in names)
        for i, c in enumerate(table.class_names)))
