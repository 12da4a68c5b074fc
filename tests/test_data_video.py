"""Video data: clip sampling, the PyAV video folder, per-process splits, multi-view scoring.

The tests write their own small clips with PyAV (tests/video_clips.py): frame i of every clip has
brightness LEVEL * i, so a decoded clip tells which frames were sampled.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from dcrn_jax import data
from dcrn_jax.media import clips
from dcrn_jax.errors import UserError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import video_clips  # pylint: disable=g-import-not-at-top,wrong-import-position

av = pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.



def _config(**overrides):
  config = default.get_config().data
  for key, value in overrides.items():
    config[key] = value
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


# ---------------------------------------------------------------- clip sampling


def _spec(**kw):
  fields = dict(num_frames=4, stride=3, size=32, resize_short=40)
  fields.update(kw)
  return clips.ClipSpec(**fields)


def test_train_indices_are_strided_inside_the_video_from_every_start():
  spec = _spec()
  starts = set()
  for s in range(300):
    idx = clips.train_frame_indices(20, spec, np.random.default_rng(s))
    assert np.all(np.diff(idx) == 3) and idx[0] >= 0 and idx[-1] <= 19
    starts.add(int(idx[0]))
  assert starts == set(range(20 - spec.span + 1))  # span 10: starts 0..10, all drawn


def test_short_video_repeats_its_last_frame():
  idx = clips.train_frame_indices(5, _spec(), np.random.default_rng(0))
  np.testing.assert_array_equal(idx, [0, 3, 4, 4])
  np.testing.assert_array_equal(clips.eval_frame_indices(1, _spec(), 0), [0, 0, 0, 0])


def test_eval_clips_are_evenly_spaced_from_first_to_last_start():
  spec = _spec(num_test_clips=5)
  starts = [clips.eval_frame_indices(50, spec, k)[0] for k in range(5)]
  assert starts == [0, 10, 20, 30, 40]  # last start: 50 - span 10
  for k in range(5):
    assert np.all(np.diff(clips.eval_frame_indices(50, spec, k)) == 3)
  assert clips.eval_frame_indices(50, _spec(), 0)[0] == 20  # One clip: centred.


def test_crops_resize_and_views():
  assert clips.resized_hw(240, 320, 40) == (40, 53)
  assert clips.resized_hw(320, 240, 40) == (53, 40)
  assert [clips.eval_crop(40, 53, 32, c, 3) for c in range(3)] == [(4, 0), (4, 10), (4, 21)]
  assert [clips.eval_crop(53, 40, 32, c, 3) for c in range(3)] == [(0, 4), (10, 4), (21, 4)]
  assert clips.eval_crop(40, 53, 32, 0, 1) == (4, 10)
  tops_lefts = {clips.train_crop(40, 53, 32, np.random.default_rng(s)) for s in range(400)}
  assert {t for t, _ in tops_lefts} == set(range(9)) and {l for _, l in tops_lefts} == set(
      range(22))
  spec = _spec(num_test_clips=2, num_test_crops=3)
  assert spec.views == 6
  views = [clips.eval_view(30, 240, 320, spec, v) for v in range(6)]
  assert [v[0][0] for v in views] == [0, 0, 0, 20, 20, 20]
  assert [v[2] for v in views[:3]] == [(4, 0), (4, 10), (4, 21)]


def test_clip_fields_are_checked():
  with pytest.raises(UserError, match="resize_short"):
    clips.spec_from_config(_config(image_size=64, resize_short=48))
  with pytest.raises(UserError, match="num_test_crops"):
    clips.spec_from_config(_config(num_test_crops=2))


# ---------------------------------------------------------------- video folder


def _write_clip(path, num_frames):
  video_clips.write_clip(path, num_frames)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
  """train: 3 classes x 4 clips (mp4, avi, mkv, webm), a corrupt file, an empty class; test:
  2 classes x 3 clips (.MP4)."""
  root = tmp_path_factory.mktemp("videos")
  for split, classes, per_class in (("train", ("cat", "dog", "owl"), 4),
                                    ("test", ("cat", "owl"), 3)):
    for k, name in enumerate(classes):
      (root / split / name).mkdir(parents=True)
      for j in range(per_class):
        ext = (".mp4", ".avi", ".mkv", ".webm")[j] if split == "train" else ".MP4"
        _write_clip(root / split / name / f"clip{j}{ext}", 12 + 4 * j + k)
  (root / "train" / "dog" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 500)
  (root / "train" / "emu").mkdir()  # An empty class folder.
  (root / "train" / "owl" / "notes.txt").write_text("not a video")
  return str(root)


def _vconfig(video_dir, **overrides):
  fields = dict(name="video_folder", video_dir=video_dir, num_frames=3, frame_stride=2,
                image_size=24, resize_short=30, shuffle_buffer=100)
  fields.update(overrides)
  return _config(**fields)


def test_video_folder_info_skips_corrupt_files_and_keeps_empty_classes(video_dir, capfd):
  from dcrn_jax.media import video_files, video_layouts
  table = video_layouts.resolve(_vconfig(video_dir))
  rows = table.rows("train")
  scanned = video_files.probe_all(tuple(table.paths[i] for i in rows),
                                  tuple(table.labels[i] for i in rows), table.class_names,
                                  where="train", warn_empty=True)
  assert len(scanned.paths) == 12 and len(scanned.skipped) == 1
  assert scanned.skipped[0][0].endswith("broken.mp4")
  assert scanned.empty_classes == ("emu",)
  assert scanned.num_frames[:4] == (12, 16, 20, 24)  # mkv frames counted from packets.
  info = data.get_info(_vconfig(video_dir, num_test_clips=2, num_test_crops=3))
  assert info.class_names == ("cat", "dog", "emu", "owl") and info.num_classes == 4
  assert (info.num_train_examples, info.num_eval_examples) == (12, 6)
  assert info.input_shape == (3, 24, 24, 3) and info.eval_views == 6
  err = capfd.readouterr().err
  assert "skipping video" in err and "broken.mp4" in err and "skipped 1 of 13" in err
  assert "class folder" in err and "emu has no video file" in err
  assert "class 'emu' has no readable video" in err


_frame_numbers = video_clips.frame_numbers


def test_video_folder_train_clips_are_strided_cropped_flipped_and_resumable(video_dir):
  config = _vconfig(video_dir, augment_flip=True)
  batches = _take(data.train_batches(config, local_batch_size=4, seed=1, start_step=0), 6)
  flips = 0
  for b in batches:
    assert b["inputs"].shape == (4, 3, 24, 24, 3) and b["inputs"].dtype == np.float32
    assert b["label"].dtype == np.int32 and set(b["label"]) <= {0, 1, 3}
    for clip in b["inputs"]:
      frames = _frame_numbers(clip)
      assert np.all(np.diff(frames) == 2), frames
      flips += clip[:, :, :4].mean() > clip[:, :, -4:].mean()  # Dark half on the right.
  assert 3 <= flips <= 21  # Flipped about half the time.
  resumed = _take(data.train_batches(config, local_batch_size=4, seed=1, start_step=4), 2)
  for a, b in zip(batches[4:], resumed):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])


_OPEN_STREAM_AT_EXIT = """
import sys
from configs import default
from dcrn_jax import data

config = default.get_config().data
for key, value in dict(name="video_folder", video_dir=sys.argv[1], num_frames=3, frame_stride=2,
                       image_size=24, resize_short=28).items():
  config[key] = value
batches = data.train_batches(config, local_batch_size=2, seed=0, start_step=0)
next(batches)
print("took a batch", flush=True)
"""


def test_a_script_exits_with_a_video_stream_still_open(video_dir, tmp_path):
  # Its decoding threads (tf.numpy_function) are stopped before Python shuts down: left to the
  # shutdown, such a script hung at exit (every time with PyAV) or aborted.
  script = tmp_path / "open_stream.py"
  script.write_text(_OPEN_STREAM_AT_EXIT)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, str(script), video_dir], capture_output=True,
                          text=True, timeout=120, cwd=root,
                          env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert "took a batch" in result.stdout and "terminate called" not in result.stderr


def test_video_folder_two_processes_share_train_and_eval_exactly_once(video_dir):
  config = _vconfig(video_dir, num_test_clips=2)
  for p in range(2):  # 12 train videos: 6 per process, every class in each.
    batches = _take(data.train_batches(config, local_batch_size=3, seed=0, start_step=0,
                                       process_index=p, process_count=2), 2)
    assert sorted(l for b in batches for l in b["label"]) == [0, 0, 1, 1, 3, 3]
  rows = []
  for p in range(2):
    batches = list(data.eval_batches(config, local_batch_size=4, process_index=p,
                                     process_count=2))
    assert len(batches) == 2  # 3 videos x 2 views per process = 6 rows: 2 batches of 4.
    for b in batches:
      assert set(b) == {"inputs", "label", "mask", "example_id"}
      assert np.all(b["example_id"][b["mask"] == 0] == -1)
      for x, v, l, m in zip(b["inputs"], b["example_id"], b["label"], b["mask"]):
        if m:
          w = sum(r[0] == v for r in rows)  # A video's views are consecutive rows.
          assert (_frame_numbers(x)[0] == 0) == (w == 0)  # View 0: the clip at the start.
          rows.append((int(v), w, int(l)))
  # Rows take the files round robin over the classes: cat, owl, cat, owl, ...
  assert sorted(rows) == [(v, w, 3 * (v % 2)) for v in range(6) for w in range(2)]
  # example_id indexes info.eval_ids, the eval files.
  eval_ids = data.get_info(config).eval_ids
  assert [os.path.basename(os.path.dirname(eval_ids[v])) for v, _, _ in sorted(rows)[::2]] == [
      "cat", "owl"] * 3


def test_video_folder_errors_are_user_errors(video_dir, tmp_path):
  with pytest.raises(UserError, match="data.video_dir"):
    data.get_info(_vconfig(""))
  with pytest.raises(UserError, match="does not exist"):
    data.get_info(_vconfig(video_dir, eval_split="val"))
  (tmp_path / "train" / "x").mkdir(parents=True)
  (tmp_path / "test").mkdir()
  with pytest.raises(UserError, match="No video file in"):
    data.get_info(_vconfig(str(tmp_path)))


# ---------------------------------------------------------------- TFDS videos


def test_ucf101_through_the_real_builder_with_mock_data(tmp_path, mock_tfds):
  config = _config(name="ucf101", data_dir=str(tmp_path / "unused"), num_frames=4,
                   frame_stride=2, image_size=32, resize_short=40, num_test_clips=2,
                   num_test_crops=3)
  with mock_tfds("ucf101", 5):
    info = data.get_info(config)
    assert (info.input_shape, info.num_classes, info.eval_views) == ((4, 32, 32, 3), 101, 6)
    assert info.class_names[0] == "ApplyEyeMakeup"
    batch = next(data.train_batches(config, local_batch_size=2, seed=0, start_step=0))
    batches = list(data.eval_batches(config, local_batch_size=8))
  assert batch["inputs"].shape == (2, 4, 32, 32, 3) and batch["inputs"].dtype == np.float32
  assert 0 <= batch["inputs"].min() and batch["inputs"].max() <= 1
  assert len(batches) == 4  # 5 videos x 6 views = 30 rows.
  ids = np.concatenate([b["example_id"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(ids, np.repeat(np.arange(5), 6))  # 6 consecutive views each.
  assert info.eval_ids == ()  # The index is the id.


def test_moving_mnist_is_read_as_unlabelled_sequences(tmp_path, mock_tfds):
  # Its only split is 'test' (tfds.testing.mock_data serves whole splits, not slices).
  config = _config(name="moving_mnist", data_dir=str(tmp_path / "unused"), num_frames=20,
                   train_split="test", eval_split="test")
  with mock_tfds("moving_mnist", 5, splits=("test",)):
    info = data.get_info(config)
    batch = next(data.train_batches(config, local_batch_size=2, seed=0, start_step=0))
    batches = list(data.eval_batches(config, local_batch_size=4))
  assert (info.num_classes, info.class_names, info.input_shape) == (0, (), (20, 64, 64, 1))
  assert sorted(batch) == ["inputs"] and batch["inputs"].shape == (2, 20, 64, 64, 1)
  assert len(batches) == 2 and sorted(batches[0]) == ["example_id", "inputs", "mask"]
  np.testing.assert_array_equal(batches[1]["mask"], [1, 0, 0, 0])


def test_train_loop_on_a_video_folder_scores_every_test_video_once_over_its_views(
    video_dir, tmp_path):
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  config = video_gru.get_config()
  for key, value in _vconfig(video_dir, num_test_clips=2, num_test_crops=3).items():
    config.data[key] = value
  config.model.stem_stride, config.model.conv_features = 2, (4, 8)
  config.model.embed_dim, config.model.hidden_size = 16, 16
  config.batch_size, config.eval_batch_size = 4, 8
  config.num_train_steps, config.log_every_steps, config.optim.warmup_steps = 3, 1, 1
  config.progress_bar = False
  result = train.train_and_evaluate(config, str(tmp_path))
  # 6 test videos x (2 clips x 3 crops) rows, averaged per video.
  assert result["num_examples"] == 6 and result["num_views"] == 36
  assert 0.0 <= result["view_accuracy"] <= 1.0
  label_map = (tmp_path / "label_map.json").read_text()
  assert json.loads(label_map) == {"0": "cat", "1": "dog", "2": "emu", "3": "owl"}
  assert train.evaluate(config, str(tmp_path))["num_examples"] == 6
