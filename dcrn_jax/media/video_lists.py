"""Readers of the split definitions video datasets ship with (numpy only, no TensorFlow).

Each reader turns its files into `Listed`: the class names in their published order and one
`Entry` (relative path, label, split, where it was listed) per line. Checking the entries
against the files on disk is `video_layouts`' job; a reader only parses, so its errors are about
the list files themselves (a line that does not parse, a class the list does not define).

  ucf101        <split_lists>/classInd.txt ("1 ApplyEyeMakeup"), trainlist0N.txt
                ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"), testlist0N.txt (paths only)
  hmdb51        <split_lists>/<class>_test_split<N>.txt ("file.avi 1": 1 train, 2 test, 0 not
                used); the videos are <video_dir>/<class>/<file>; classes sorted by name
  kinetics_csv  a CSV (or a folder of them) with columns label, youtube_id, time_start,
                time_end, split; the clip is <youtube_id>_<start:06d>_<end:06d>.<ext> anywhere
                under video_dir; classes sorted by name
  list          one file per split, "relative/path label" per line, label a class index or a
                class name (as MMAction2 writes them); <split_lists>/<split>.txt, or split_lists
                with "{split}" in it
"""

import csv
import dataclasses
import glob
import os
import re

from dcrn_jax.errors import UserError

_FIRST_FEW = 3  # Paths or lines quoted in a message.


@dataclasses.dataclass(frozen=True)
class Entry:
  """One line of a split list: `path` relative to data.video_dir (or absolute)."""

  path: str
  label: int
  split: str
  where: str  # "file:line", for messages.


@dataclasses.dataclass(frozen=True)
class Listed:
  """What a reader found: class names (label i is class_names[i]) and the entries."""

  class_names: tuple[str, ...]
  entries: tuple[Entry, ...]
  notes: tuple[str, ...] = ()  # Lines for the user that are not problems (counts of unused rows).


def first_few(items) -> str:
  items = list(items)
  shown = ", ".join(str(x) for x in items[:_FIRST_FEW])
  return shown + (", ..." if len(items) > _FIRST_FEW else "")


def _lines(path: str):
  """(line number, stripped text) of the non-empty lines of a text file."""
  if not os.path.isfile(path):
    raise UserError(f"The split list {path} does not exist; check data.split_lists.")
  try:
    with open(path, encoding="utf-8-sig") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"Cannot read the split list {path} ({e}).") from e
  return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _bad_line(path, n, line, expected):
  return UserError(f"Cannot parse {path} line {n}: {line[:80]!r} (expected {expected}).")


def _unknown(names, where, defined_in):
  return UserError(
      f"{len(names)} entr{'y names a class' if len(names) == 1 else 'ies name classes'} that "
      f"{defined_in} does not define: {first_few(names)} (first at {where}). Fix the list or "
      "the class list.")


def _split_number(data_config) -> int:
  if data_config.split not in (1, 2, 3):
    raise UserError(f"data.split is {data_config.split}; {data_config.split_format} defines "
                    "splits 1, 2 and 3.")
  return data_config.split


def read_ucf101(data_config) -> Listed:
  """classInd.txt + trainlist0N.txt + testlist0N.txt; labels are classInd's indices - 1."""
  folder, n = data_config.split_lists, _split_number(data_config)
  class_file = os.path.join(folder, "classInd.txt")
  indices, names = [], []
  for num, line in _lines(class_file):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise _bad_line(class_file, num, line, "'index class_name'")
    indices.append(int(parts[0]))
    names.append(parts[1])
  if indices != list(range(1, len(names) + 1)):
    raise UserError(f"{class_file} numbers its classes {first_few(indices)}; expected 1, 2, 3, "
                    "... in order.")
  by_name = {name: i for i, name in enumerate(names)}
  entries, unknown = [], []
  train_file = os.path.join(folder, f"trainlist{n:02d}.txt")
  for num, line in _lines(train_file):
    parts = line.split()
    if len(parts) != 2 or not parts[1].isdigit():
      raise _bad_line(train_file, num, line, "'Class/file.avi class_index'")
    if not 1 <= int(parts[1]) <= len(names):
      unknown.append((f"index {parts[1]}", f"{train_file}:{num}"))
      continue
    entries.append(Entry(parts[0], int(parts[1]) - 1, "train", f"{train_file}:{num}"))
  test_file = os.path.join(folder, f"testlist{n:02d}.txt")
  for num, line in _lines(test_file):
    parts = line.split()
    if len(parts) != 1 or "/" not in parts[0]:
      raise _bad_line(test_file, num, line, "'Class/file.avi'")
    name = parts[0].split("/")[0]
    if name not in by_name:
      unknown.append((name, f"{test_file}:{num}"))
      continue
    entries.append(Entry(parts[0], by_name[name], "test", f"{test_file}:{num}"))
  if unknown:
    raise _unknown([u for u, _ in unknown], unknown[0][1], class_file)
  return Listed(tuple(names), tuple(entries))


_HMDB_SPLITS = {"1": "train", "2": "test"}  # "0": not used in this split.


def read_hmdb51(data_config) -> Listed:
  """<class>_test_split<N>.txt files; classes sorted by name."""
  folder, n = data_config.split_lists, _split_number(data_config)
  suffix = f"_test_split{n}.txt"
  files = sorted(glob.glob(os.path.join(glob.escape(folder), f"*{suffix}")))
  if not files:
    raise UserError(f"No HMDB51 split file *{suffix} in {folder}; point data.split_lists at the "
                    "folder of testTrainMulti_7030_splits.")
  names = [os.path.basename(f)[:-len(suffix)] for f in files]
  entries, unused = [], 0
  for label, (name, path) in enumerate(zip(names, files)):
    for num, line in _lines(path):
      parts = line.split()
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        raise _bad_line(path, num, line, "'file.avi 0|1|2'")
      if parts[1] == "0":
        unused += 1
        continue
      entries.append(Entry(os.path.join(name, parts[0]), label, _HMDB_SPLITS[parts[1]],
                           f"{path}:{num}"))
  notes = (f"{unused} videos are marked 0 (not used) in split {n}",) if unused else ()
  return Listed(tuple(names), tuple(entries), notes)


_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def read_kinetics_csv(data_config, files: tuple[str, ...]) -> Listed:
  """Kinetics CSV rows; a row's clip is found by its file name anywhere in `files`.

  `files` are the video files under data.video_dir (relative paths). A row whose clip is not
  there keeps the name `<youtube_id>_<start>_<end>` as its path, so it is reported missing.
  Rows without a label (unlabelled test sets) are left out and counted.
  """
  source = data_config.split_lists
  paths = (sorted(glob.glob(os.path.join(glob.escape(source), "*.csv")))
           if os.path.isdir(source) else [source])
  if not paths or not os.path.isfile(paths[0]):
    raise UserError(f"data.split_lists={source!r} is neither a Kinetics CSV file nor a folder "
                    "holding *.csv files.")
  by_stem = {}
  for rel in files:
    by_stem.setdefault(os.path.splitext(os.path.basename(rel))[0], rel)
  rows, unlabelled = [], 0
  for path in paths:
    try:
      with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _KINETICS_COLUMNS[1:] if c not in (reader.fieldnames or ())]
        if missing:
          raise UserError(f"{path} has no column {first_few(missing)} (header: "
                          f"{reader.fieldnames}); a Kinetics CSV has the columns "
                          f"{','.join(_KINETICS_COLUMNS)}.")
        for row in reader:
          num = reader.line_num
          if not row.get("label"):
            unlabelled += 1
            continue
          try:
            stem = (f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_"
                    f"{int(float(row['time_end'])):06d}")
          except (TypeError, ValueError):
            raise _bad_line(path, num, ",".join(str(v) for v in row.values()),
                            "integer time_start and time_end") from None
          rows.append((stem, row["label"], row["split"], f"{path}:{num}"))
    except csv.Error as e:
      raise UserError(f"Cannot parse {path}: {e}.") from e
  names = tuple(sorted({label for _, label, _, _ in rows}))
  index = {name: i for i, name in enumerate(names)}
  entries = tuple(Entry(by_stem.get(stem, stem), index[label], split, where)
                  for stem, label, split, where in rows)
  notes = (f"{unlabelled} CSV rows without a label were left out",) if unlabelled else ()
  return Listed(names, entries, notes)


def _list_file(data_config, split: str) -> str:
  spec = data_config.split_lists
  if "{split}" in spec:
    return spec.replace("{split}", split)
  for candidate in (os.path.join(spec, f"{split}.txt"), os.path.join(spec, split)):
    if os.path.isfile(candidate):
      return candidate
  raise UserError(f"No list file for split {split!r}: expected {os.path.join(spec, split)}.txt "
                  "(or set data.split_lists to a path with {split} in it, e.g. "
                  "lists/ucf101_{split}_split_1_videos.txt).")


def _class_file_names(path: str) -> tuple[str, ...]:
  names = tuple(line for _, line in _lines(path))
  if len(set(names)) != len(names):
    raise UserError(f"{path} names a class twice; it must list each class once, one per line.")
  return names


def read_list(data_config) -> Listed:
  """One "path label" file per split (data.train_split and data.eval_split).

  Labels are class indices when every label is an integer, else class names. Class names come
  from data.class_names_file (one per line, line i is label i) when set; otherwise names are
  the train list's sorted names, and indices stand for themselves ("0", "1", ...).
  """
  raw = []
  for split in dict.fromkeys((data_config.train_split, data_config.eval_split)):
    path = _list_file(data_config, split)
    for num, line in _lines(path):
      parts = line.split()
      if len(parts) != 2:
        raise _bad_line(path, num, line, "'relative/path label' (one label; no spaces in paths)")
      raw.append((parts[0], parts[1], split, f"{path}:{num}"))
  if not raw:
    raise UserError(f"The list files of data.split_lists={data_config.split_lists!r} are empty.")
  by_index = all(label.isdigit() for _, label, _, _ in raw)
  class_file = data_config.class_names_file
  if class_file:
    names = _class_file_names(class_file)
    defined_in = class_file
  elif by_index:
    names = tuple(str(i) for i in range(max(int(label) for _, label, _, _ in raw) + 1))
    defined_in = "the list"
  else:
    names = tuple(sorted({label for _, label, split, _ in raw
                          if split == data_config.train_split}))
    defined_in = f"the {data_config.train_split} list"
  index = {name: i for i, name in enumerate(names)}
  entries, unknown = [], []
  for path, label, split, where in raw:
    i = int(label) if by_index and int(label) < len(names) else index.get(label)
    if i is None:
      unknown.append((label, where))
    else:
      entries.append(Entry(path, i, split, where))
  if unknown:
    raise _unknown([u for u, _ in unknown], unknown[0][1], defined_in)
  return Listed(names, tuple(entries))


def group_key(relative_path: str) -> str:
  """What must stay on one side of a split: UCF101's group (clips cut from one long video share
  `_gNN_` in their names), else the file itself."""
  head, name = os.path.split(relative_path)
  match = re.search(r"_g\d+_", name)
  return os.path.join(head, name[:match.end()]) if match else relative_path
