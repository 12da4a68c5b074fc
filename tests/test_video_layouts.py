"""Video datasets as they are distributed: every layout resolved to one (file, label, split) table.

Each layout is generated here (real PyAV-written clips, copied under the names the layout uses):
class folders split by eval_fraction, UCF101 (classInd + train/test lists), HMDB51 (per-class
split files), a Kinetics CSV, and MMAction2-style list files.
"""

import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from dcrn_jax import data
from dcrn_jax.media import video_layouts, video_lists
from dcrn_jax.errors import UserError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import video_clips  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.

pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "BabyCrawling")
HMDB_MARKS = {"brush_hair": "11201", "cartwheel": "12110"}  # Per file: 1 train, 2 test, 0 unused.


def _config(video_dir, **overrides):
  config = default.get_config().data
  fields = dict(name="video_folder", video_dir=str(video_dir), num_frames=2, frame_stride=1,
                image_size=16, resize_short=16, shuffle_buffer=100)
  fields.update(overrides)
  for key, value in fields.items():
    config[key] = value
  return config


def _resolve(video_dir, **overrides):
  return video_layouts.resolve(_config(video_dir, **overrides))


def _write_hmdb(sources, root):
  """root/v/<class>/<class>_<j>.avi and root/s/<class>_test_split1.txt marking them."""
  for name, marks in HMDB_MARKS.items():
    for j in range(len(marks)):
      _place(sources, str(root / "v" / name / f"{name}_{j}.avi"))
    (root / "s").mkdir(exist_ok=True)
    # The real files end their lines with a space.
    (root / "s" / f"{name}_test_split1.txt").write_text(
        "".join(f"{name}_{j}.avi {m} \n" for j, m in enumerate(marks)))
    (root / "s" / f"{name}_test_split2.txt").write_text("")
  return dict(video_dir=root / "v", split_format="hmdb51", split_lists=str(root / "s"))


def _counts(table):
  """{(split, class name): number of files}."""
  return dict(collections.Counter(
      (s, table.class_names[l]) for s, l in zip(table.splits, table.labels)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """Two real clips (.avi, .mp4) that every layout copies under its own names."""
  root = tmp_path_factory.mktemp("sources")
  return {ext: video_clips.write_clip(root / f"clip{ext}", 6, height=20, width=24)
          for ext in (".avi", ".mp4")}


def _place(sources, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  shutil.copy(sources[os.path.splitext(path)[1]], path)


@pytest.fixture(scope="module")
def ucf(sources, tmp_path_factory):
  """UCF-101/<class>/v_<class>_gGG_cCC.avi (groups 1-4, 2 clips each) and ucfTrainTestlist/:
  split N tests group N. One extra file (group 5) is in no list."""
  root = tmp_path_factory.mktemp("ucf")
  videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
  lists.mkdir()
  (lists / "classInd.txt").write_text(
      "".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)))  # The real file has CRLF.
  for n in (1, 2, 3):
    train, test = [], []
    for i, c in enumerate(UCF_CLASSES, 1):
      for g in (1, 2, 3, 4):
        for k in (1, 2):
          rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi"
          _place(sources, str(videos / rel))
          (test.append(rel) if g == n else train.append(f"{rel} {i}"))
    (lists / f"trainlist{n:02d}.txt").write_text("\n".join(train) + "\n")
    (lists / f"testlist{n:02d}.txt").write_text("\n".join(test) + "\n")
  _place(sources, str(videos / "Archery" / "v_Archery_g05_c01.avi"))
  return videos, lists


def test_ucf101_lists_resolve_to_their_counts_and_published_label_indices(ucf, capsys):
  videos, lists = ucf
  table = _resolve(videos, split_format="ucf101", split_lists=str(lists), split=2)
  assert table.class_names == UCF_CLASSES  # classInd's order: label i is classInd's i + 1.
  assert _counts(table) == {**{("train", c): 6 for c in UCF_CLASSES},
                            **{("test", c): 2 for c in UCF_CLASSES}}
  tests = [p for p, s in zip(table.paths, table.splits) if s == "test"]
  assert all("_g02_" in p for p in tests)
  for path, label in zip(table.paths, table.labels):
    assert os.path.basename(os.path.dirname(path)) == UCF_CLASSES[label]
  out = capsys.readouterr().out
  assert "1 video files under" in out and "v_Archery_g05_c01.avi" in out  # In no split.
  assert "(ucf101 split 2): test 6, train 18; 3 classes" in out


def test_hmdb51_split_files_mark_train_test_and_unused(sources, tmp_path, capsys):
  table = _resolve(**_write_hmdb(sources, tmp_path))
  assert table.class_names == ("brush_hair", "cartwheel")
  assert _counts(table) == {("train", "brush_hair"): 3, ("test", "brush_hair"): 1,
                            ("train", "cartwheel"): 3, ("test", "cartwheel"): 1}
  assert "2 videos are marked 0 (not used) in split 1" in capsys.readouterr().out


def _write_kinetics(sources, root):
  """root/k/<split>/<label>/<id>_<start>_<end>.mp4 and root/train.csv naming them, plus a row
  whose clip is missing and an unlabelled row."""
  rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
  for label in ("zumba", "abseiling"):
    for j in range(4):
      split = "val" if j == 3 else "train"
      youtube_id = f"{label[:3]}-{j}_x"  # Ids contain '-' and '_'.
      rows.append(f"{label},{youtube_id},{10 * j},{10 * j + 10},{split},0")
      _place(sources, str(root / "k" / split / label / f"{youtube_id}_{10 * j:06d}_"
                          f"{10 * j + 10:06d}.mp4"))
  rows.append("zumba,gone,5,15,train,0")  # A video no longer on YouTube: no file.
  rows.append(",unlabelled,0,10,test,0")  # Test rows of some releases have no label.
  (root / "train.csv").write_text("\n".join(rows) + "\n")
  return dict(video_dir=root / "k", split_format="kinetics_csv",
              split_lists=str(root / "train.csv"), eval_split="val")


def test_kinetics_csv_finds_clips_anywhere_and_counts_missing_rows(sources, tmp_path, capfd):
  table = _resolve(**_write_kinetics(sources, tmp_path))
  assert table.class_names == ("abseiling", "zumba")  # Sorted, as the published indices.
  assert _counts(table) == {("train", "abseiling"): 3, ("val", "abseiling"): 1,
                            ("train", "zumba"): 3, ("val", "zumba"): 1}
  out, err = capfd.readouterr()
  assert "1 of 9 listed videos do not exist" in err and "gone_000005_000015" in err
  assert "1 CSV rows without a label were left out" in out


def _write_lists(sources, tmp_path, train_lines, test_lines):
  for rel in ("a/x0.mp4", "a/x1.mp4", "b/y0.avi", "b/y1.avi", "c/z0.mp4"):
    _place(sources, str(tmp_path / "v" / rel))
  (tmp_path / "lists").mkdir(exist_ok=True)
  (tmp_path / "lists" / "train.txt").write_text("\n".join(train_lines) + "\n")
  (tmp_path / "lists" / "test.txt").write_text("\n".join(test_lines) + "\n")
  return str(tmp_path / "v"), str(tmp_path / "lists")


def test_list_files_with_indices_names_and_a_class_names_file(sources, tmp_path):
  videos, lists = _write_lists(sources, tmp_path, ["a/x0.mp4 2", "b/y0.avi 0", "c/z0.mp4 1"],
                               ["a/x1.mp4 2", "b/y1.avi 0"])
  table = _resolve(videos, split_format="list", split_lists=lists)
  assert table.class_names == ("0", "1", "2")  # No names anywhere: indices stand for themselves.
  assert dict(zip(map(os.path.basename, table.paths), table.labels)) == {
      "x0.mp4": 2, "y0.avi": 0, "z0.mp4": 1, "x1.mp4": 2, "y1.avi": 0}
  (tmp_path / "classes.txt").write_text("bee\nant\ncat\n")
  named = _resolve(videos, split_format="list", split_lists=lists,
                   class_names_file=str(tmp_path / "classes.txt"))
  assert named.class_names == ("bee", "ant", "cat") and named.labels == table.labels
  _write_lists(sources, tmp_path, ["a/x0.mp4 cat", "b/y0.avi ant"], ["a/x1.mp4 cat"])
  by_name = _resolve(videos, split_format="list", split_lists=str(tmp_path / "lists" /
                                                                  "{split}.txt"))
  assert by_name.class_names == ("ant", "cat") and _counts(by_name) == {
      ("train", "cat"): 1, ("train", "ant"): 1, ("test", "cat"): 1}


# ---------------------------------------------------------------- the hash split


def _eval_files(table):
  return sorted(os.path.relpath(p, table.root) for p, s in zip(table.paths, table.splits)
                if s == "test")


def test_fraction_split_keeps_groups_whole_is_stable_and_printed(ucf, tmp_path, capsys):
  videos, _ = ucf
  table = _resolve(videos, eval_fraction=0.3)
  out = capsys.readouterr().out
  assert "per class (test/train): ApplyEyeMakeup " in out
  counts = _counts(table)
  assert f"ApplyEyeMakeup {counts.get(('test', 'ApplyEyeMakeup'), 0)}/" in out
  sides = collections.defaultdict(set)
  for path, split in zip(table.paths, table.splits):
    sides[video_lists.group_key(os.path.relpath(path, table.root))].add(split)
  assert len(sides) == 3 * 4 + 1 and all(len(s) == 1 for s in sides.values())  # Groups never cross.
  assert {"train", "test"} == set().union(*sides.values())
  video_layouts._resolve.cache_clear()  # A fresh resolve, as in another run.
  assert _eval_files(_resolve(videos, eval_fraction=0.3)) == _eval_files(table)

  # Another process (as each process of a multi-host run resolves on its own) gets the same.
  code = ("import sys; from tests.test_video_layouts import _resolve, _eval_files; "
          f"print('EVAL', _eval_files(_resolve({str(videos)!r}, eval_fraction=0.3)))")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.split("EVAL ")[1].strip() == str(_eval_files(table))

  # Adding a file moves no other file across the split.
  copy = tmp_path / "copy"
  shutil.copytree(videos, copy)
  before = dict(zip(map(str, table.paths), table.splits))
  shutil.copy(table.paths[0], copy / "Archery" / "v_Archery_g09_c01.avi")
  after = _resolve(copy, eval_fraction=0.3)
  moved = [p for p, s in zip(after.paths, after.splits)
           if before.get(p.replace(str(copy), str(videos)), s) != s]
  assert len(after.paths) == len(table.paths) + 1 and not moved


def test_fraction_split_over_two_processes_reads_disjoint_blocks_of_every_class(ucf):
  videos, _ = ucf
  config = _config(videos, eval_fraction=0.3)
  table = video_layouts.resolve(config)
  train_labels = [l for l, s in zip(table.labels, table.splits) if s == "train"]
  per_process = len(train_labels) // 2
  seen = []
  for p in range(2):
    stream = data.train_batches(config, local_batch_size=per_process, seed=0, start_step=0,
                                process_index=p, process_count=2)
    labels = next(stream)["label"]
    assert len(set(labels)) == 3  # Round robin over classes: every block mixes them.
    seen += list(labels)
  # The two blocks are disjoint: together no label appears more often than in the split.
  assert len(seen) == 2 * per_process
  assert not collections.Counter(seen) - collections.Counter(train_labels)


# ---------------------------------------------------------------- training on each layout


def _train_briefly(tmp_path, **data_fields):
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  config = video_gru.get_config()
  for key, value in _config(**data_fields).items():
    config.data[key] = value
  config.model.stem_stride, config.model.conv_features = 2, (4,)
  config.model.embed_dim, config.model.hidden_size = 8, 8
  config.batch_size, config.eval_batch_size = 4, 8
  config.num_train_steps, config.log_every_steps, config.optim.warmup_steps = 2, 1, 1
  config.checkpoint_every_steps, config.progress_bar = 2, False
  workdir = tmp_path / f"run_{data_fields.get('split_format', 'folders')}"
  result = train.train_and_evaluate(config, str(workdir))
  label_map = json.loads((workdir / "label_map.json").read_text())
  return result, tuple(label_map[str(i)] for i in range(len(label_map)))


# UCF101's lists run by default; the other layouts (each compiles and trains anew, ~40 s of CPU
# apiece) with -m slow.
@pytest.mark.parametrize("layout", [
    "ucf101", pytest.param("fraction", marks=pytest.mark.slow),
    pytest.param("hmdb51", marks=pytest.mark.slow),
    pytest.param("kinetics_csv", marks=pytest.mark.slow),
    pytest.param("list", marks=pytest.mark.slow)])
def test_training_runs_and_evaluates_on_every_layout(layout, ucf, sources, tmp_path):
  videos, lists = ucf
  if layout == "fraction":
    fields, classes = dict(video_dir=videos, eval_fraction=0.3), UCF_CLASSES
  elif layout == "ucf101":
    fields = dict(video_dir=videos, split_format="ucf101", split_lists=str(lists))
    classes = UCF_CLASSES
  elif layout == "hmdb51":
    fields, classes = _write_hmdb(sources, tmp_path / "hmdb"), tuple(HMDB_MARKS)
  elif layout == "kinetics_csv":
    fields, classes = _write_kinetics(sources, tmp_path / "kinetics"), ("abseiling", "zumba")
  else:
    list_videos, list_dir = _write_lists(sources, tmp_path, ["a/x0.mp4 0", "b/y0.avi 1",
                                                             "c/z0.mp4 1", "a/x1.mp4 0"],
                                         ["b/y1.avi 1"])
    fields = dict(video_dir=list_videos, split_format="list", split_lists=list_dir)
    classes = ("0", "1")
  table = video_layouts.resolve(_config(**fields))
  result, label_map = _train_briefly(tmp_path, **fields)
  assert label_map == classes  # The list's order: label indices match the published ones.
  eval_split = fields.get("eval_split", "test")
  assert result["num_examples"] == len(table.rows(eval_split)) and np.isfinite(result["loss"])


# ---------------------------------------------------------------- bad inputs


def test_lists_naming_missing_files_warn_with_a_count_or_fail_when_all_are_missing(
    sources, tmp_path, capfd):
  videos, lists = _write_lists(sources, tmp_path, ["a/x0.mp4 0", "a/nope.mp4 0",
                                                   "a/x0.mp4 0"], ["b/y1.avi 1"])
  table = _resolve(videos, split_format="list", split_lists=lists)
  assert len(table.paths) == 2
  err = capfd.readouterr().err
  assert "1 of 4 listed videos do not exist" in err and "a/nope.mp4" in err
  assert "1 duplicate entries left out: a/x0.mp4" in err
  _write_lists(sources, tmp_path, ["q/gone.mp4 0", "q/gone2.mp4 0"], ["q/gone3.mp4 0"])
  with pytest.raises(UserError, match="None of the 3 videos listed .*first: q/gone.mp4"):
    _resolve(videos, split_format="list", split_lists=lists)


def test_bad_lists_and_fields_are_one_clear_error(ucf, sources, tmp_path):
  videos, lists = ucf
  for value in (-0.1, 1.0, 1.5):
    with pytest.raises(UserError, match=r"eval_fraction is .*must be in \(0, 1\)"):
      _resolve(videos, eval_fraction=value)
  with pytest.raises(UserError, match="split_format is 'ucf'; use one of folders"):
    _resolve(videos, split_format="ucf")
  with pytest.raises(UserError, match="data.split is 4; ucf101 defines splits 1, 2 and 3"):
    _resolve(videos, split_format="ucf101", split_lists=str(lists), split=4)
  with pytest.raises(UserError, match="needs data.split_lists"):
    _resolve(videos, split_format="ucf101")
  with pytest.raises(UserError, match="eval_fraction splits class folders"):
    _resolve(videos, split_format="ucf101", split_lists=str(lists), eval_fraction=0.2)
  with pytest.raises(UserError, match="class_names_file names the classes of"):
    _resolve(videos, split_format="ucf101", split_lists=str(lists), class_names_file="x.txt")
  with pytest.raises(UserError, match="split list .*nowhere/classInd.txt does not exist"):
    _resolve(videos, split_format="ucf101", split_lists=str(tmp_path / "nowhere"))
  with pytest.raises(UserError, match="both 'train'"):
    _resolve(videos, eval_split="train")
  with pytest.raises(UserError, match="have no split 'val'; splits: test, train"):
    _resolve(videos, split_format="ucf101", split_lists=str(lists), eval_split="val").rows("val")

  bad = tmp_path / "bad_lists"
  shutil.copytree(lists, bad)
  (bad / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
                                      "Juggling/v_Juggling_g01_c01.avi\n")
  with pytest.raises(UserError, match=r"1 entry names a class that .*classInd.txt does not "
                                      r"define: Juggling \(first at .*testlist01.txt:2\)"):
    _resolve(videos, split_format="ucf101", split_lists=str(bad))
  (bad / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 1\n"
                                       "Archery/v_Archery_g02_c01.avi one\n")
  with pytest.raises(UserError, match=r"Cannot parse .*trainlist01.txt line 2: "
                                      r"'Archery/v_Archery_g02_c01.avi one'"):
    _resolve(videos, split_format="ucf101", split_lists=str(bad))
  list_videos, list_dir = _write_lists(sources, tmp_path, ["a/x0.mp4 0 1"], ["b/y1.avi 1"])
  with pytest.raises(UserError, match=r"train.txt line 1: 'a/x0.mp4 0 1' \(expected"):
    _resolve(list_videos, split_format="list", split_lists=list_dir)
  _write_lists(sources, tmp_path, ["a/x0.mp4 0"], ["b/y1.avi 1"])
  with pytest.raises(UserError, match="split list .*missing.txt does not exist"):
    _resolve(list_videos, split_format="list", split_lists=list_dir,
             class_names_file=str(tmp_path / "missing.txt"))
  (tmp_path / "twice.txt").write_text("ant\nbee\nant\n")
  with pytest.raises(UserError, match="twice.txt names a class twice"):
    _resolve(list_videos, split_format="list", split_lists=list_dir,
             class_names_file=str(tmp_path / "twice.txt"))
  (tmp_path / "k.csv").write_text("label,youtube_id,time_start\nzumba,abc,1\n")
  with pytest.raises(UserError, match="has no column time_end, split"):
    _resolve(list_videos, split_format="kinetics_csv", split_lists=str(tmp_path / "k.csv"))
