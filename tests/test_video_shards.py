"""Real videos at the speed of the model: seeking in PyAV, and prepared video shards.

Clips are PyAV-written (tests/video_clips.py): frame i has brightness LEVEL * i, so a decoded
frame tells its index. Shards hold JPEG frames, so shard clips equal PyAV clips up to JPEG's
error; everything else about a clip (frames, crop, flip, order, example ids) is exact.
"""

import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from dcrn_jax import data, train
from dcrn_jax.media import video_files
from dcrn_jax.errors import UserError

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import kill_worker  # pylint: disable=g-import-not-at-top,wrong-import-position
import video_clips  # pylint: disable=g-import-not-at-top,wrong-import-position

av = pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")
# JPEG (quality 90, 4:2:0) of these flat frames, against FFmpeg's own decoding: measured 2/255.
_JPEG_TOLERANCE = 4 / 255


# ---------------------------------------------------------------- seeking


@pytest.mark.parametrize("ext,codec,options", [
    (".mp4", "libx264", {"qp": "0", "g": "12"}),  # Lossless, a keyframe every 12 frames.
    (".mp4", "libx264", {"crf": "20", "g": "16", "bf": "3"}),  # Lossy, B-frames.
    (".avi", "mpeg4", {"g": "10", "qscale": "2"}),
    (".mkv", "ffv1", {"g": "8"}),
    (".webm", "libvpx-vp9", {"lossless": "1", "g": "10"}),
])
def test_seeking_decodes_the_frames_sequential_decoding_gives_from_the_keyframe(
    ext, codec, options, tmp_path, monkeypatch):
  path = video_clips.write_clip(tmp_path / f"clip{ext}", 60, codec=codec, options=options)
  decoded = []
  real_decode = av.container.InputContainer.decode

  def counting_decode(self, *args, **kwargs):
    for frame in real_decode(self, *args, **kwargs):
      decoded.append(frame)
      yield frame
  monkeypatch.setattr(av.container.InputContainer, "decode", counting_decode)
  for start in (0, 7, 30, 45, 54):
    indices = np.minimum(start + 2 * np.arange(4), 59)
    decoded.clear()
    seek, ok = video_files.decode_clip(path, indices, (36, 48), (0, 4), 32, False, seek=True)
    seek_cost = len(decoded)
    decoded.clear()
    scan, _ = video_files.decode_clip(path, indices, (36, 48), (0, 4), 32, False, seek=False)
    assert ok and np.array_equal(seek, scan), (start, ext)
    assert seek_cost <= len(decoded)
    if start >= 30:  # Past a keyframe: seeking skips what scanning decodes.
      assert seek_cost <= len(decoded) - 10, (start, seek_cost, len(decoded))
  if codec == "ffv1" or "qp" in options or "lossless" in options:  # Exact brightness.
    wrapped = [round(video_clips.LEVEL * i % 256 / video_clips.LEVEL) for i in (54, 56, 58, 59)]
    np.testing.assert_array_equal(video_clips.frame_numbers(seek / 255.0), wrapped)


# ---------------------------------------------------------------- preparing


def _make_folder(root, corrupt=True):
  """train: cat, dog x 3 clips of 10-17 frames (one mkv); test: cat, dog x 2; a corrupt mp4."""
  for split, per_class in (("train", 3), ("test", 2)):
    for k, name in enumerate(("cat", "dog")):
      (root / split / name).mkdir(parents=True, exist_ok=True)
      for j in range(per_class):
        ext = ".mkv" if (split, k, j) == ("train", 1, 2) else ".mp4"
        video_clips.write_clip(root / split / name / f"c{j}{ext}", 10 + 3 * j + k)
  if corrupt:
    (root / "train" / "dog" / "broken.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"x" * 300)
  return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return _make_folder(tmp_path_factory.mktemp("videos"))


def _config(video_dir, data_dir, **overrides):
  config = default.get_config().data
  fields = dict(name="video_folder", video_dir=str(video_dir), data_dir=str(data_dir),
                num_frames=3, frame_stride=2, image_size=24, resize_short=28,
                shuffle_buffer=100, augment_flip=True, num_test_clips=2, num_test_crops=3,
                prepare_workers=2)
  fields.update(overrides)
  for key, value in fields.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path_factory.mktemp("tfds")
  builder.ensure(_config(folder, data_dir))
  return data_dir


def test_preparation_writes_every_frame_as_a_tfds_dataset_and_lists_the_skipped_file(
    folder, prepared):
  from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  config = _config(folder, prepared)
  path = builder.dataset_dir(config)
  assert path.startswith(str(prepared)) and "_s28_q90" in path
  shards = tfds.builder_from_directory(path)  # Any TFDS reader can load it.
  assert shards.info.features["label"].names == ["cat", "dog"]
  metadata = builder.load(path)
  assert metadata.skipped[0][0].endswith("broken.mp4") and "FFmpeg" in metadata.skipped[0][1]
  assert json.load(open(os.path.join(path, "metadata.json")))["num_skipped"] == 1
  train_videos = metadata.videos["train"]
  assert train_videos["num_frames"] == (10, 13, 16, 11, 14, 17)
  assert shards.info.splits["train"].num_examples == 7  # Records of 16 frames: 17 take two.
  assert metadata.frames_per_record == 16 and train_videos["first"] == (0, 1, 2, 3, 4, 5)
  source = shards.as_data_source()["train"]
  record = source[train_videos["first"][5] + 1]  # Frames 16-17 of the 17 of video 5.
  assert (record["video"], record["first_frame"], record["label"]) == (5, 16, 1)
  assert record["num_frames"] == 17 and record["path"] in (train_videos["path"][5],
                                                            train_videos["path"][5].encode())
  first = source[train_videos["first"][4]]  # Frames 0-13 of video 4, at the resized size.
  images = np.stack(first["images"])
  assert images.shape == (14, 28, 37, 3)
  for f in (0, 5, 13):
    brightness = images[f, :, 19:].mean()  # The right half of frame f.
    assert abs(brightness - video_clips.LEVEL * f) <= 2
  assert not os.path.exists(builder._work_dir(config))  # Work files are gone once written.


def test_shard_clips_equal_the_pyav_clips_up_to_jpeg_error(folder, prepared):
  direct, cached = _config(folder, prepared), _config(folder, prepared, video_cache=True)
  assert data.get_info(direct) == data.get_info(cached)  # Same classes, sizes, eval_ids.
  batches = [list(zip(range(3), data.train_batches(c, local_batch_size=3, seed=3,
                                                   start_step=1))) for c in (direct, cached)]
  for (_, a), (_, b) in zip(*batches):
    np.testing.assert_array_equal(a["label"], b["label"])
    assert np.abs(a["inputs"] - b["inputs"]).max() <= _JPEG_TOLERANCE
  evals = [list(data.eval_batches(c, local_batch_size=8, process_index=1, process_count=2))
           for c in (direct, cached)]
  assert len(evals[0]) == len(evals[1]) == 2  # 2 videos x 6 views on process 1.
  for a, b in zip(*evals):
    for key in ("label", "mask", "example_id"):
      np.testing.assert_array_equal(a[key], b[key])
    assert np.abs(a["inputs"] - b["inputs"]).max() <= _JPEG_TOLERANCE


def test_a_shard_clip_does_not_depend_on_the_batch_it_is_made_in(folder, prepared):
  # Training batches are made whole (one plan, parse and decode loop per batch): clip i of the
  # stream must be the same cut in batches of 4 as in batches of 1, flipped or not.
  config = _config(folder, prepared, video_cache=True)
  streams = [np.concatenate([b["inputs"] for b in itertools.islice(
      data.train_batches(config, local_batch_size=size, seed=5, start_step=0), 8 // size)])
             for size in (4, 1)]
  np.testing.assert_array_equal(*streams)
  direct = np.concatenate([b["inputs"] for b in itertools.islice(data.train_batches(
      _config(folder, prepared), local_batch_size=4, seed=5, start_step=0), 2)])
  assert np.abs(streams[0] - direct).max() <= _JPEG_TOLERANCE
  mirrored = [np.abs(s - s[:, :, ::-1]).max() for s in streams[0]]
  assert max(mirrored) > 0.1  # Not all symmetric, so a wrong flip would show.


def test_only_the_sampled_frames_of_a_tfds_video_are_decoded():
  from dcrn_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import clips  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data.tf_import import tf  # pylint: disable=g-import-not-at-top
  frames = [b"not an image"] + [tf.io.encode_png(video_clips.frame_image(i)).numpy()
                                for i in range(1, 8)]
  spec = clips.ClipSpec(num_frames=3, stride=2, size=24, resize_short=36)

  def sample(video_len, height, width, view):  # Frames 3, 5, 7: frame 0 is never touched.
    return tfds_source._plan(np.array([3, 5, 7]), clips.resized_hw(height, width, 36),
                             (0, 24), False)  # The right, brighter half.
  clip = tfds_source._video_frames(tf.constant(frames), 3, spec, sample, tf.constant(0, tf.int64))
  assert clip.dtype == tf.uint8  # Pixels: the device scales them.
  np.testing.assert_array_equal(video_clips.frame_numbers(clip.numpy() / 255.0), [3, 5, 7])


def test_a_changed_source_is_refused_rebuilt_and_a_missing_one_read_as_prepared(tmp_path, capsys):
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(_make_folder(tmp_path / "v", corrupt=False))
  config = _config(root, tmp_path / "tfds", video_cache=True)
  assert data.get_info(config).num_train_examples == 6  # Prepared on first use.
  video_clips.write_clip(root / "train" / "cat" / "new.mp4", 12)
  os.remove(root / "test" / "dog" / "c1.mp4")
  video_clips.write_clip(root / "train" / "dog" / "c0.mp4", 20)  # Same name, other content.
  with pytest.raises(UserError, match=r"changed since its video shards were prepared .*1 added "
                                      r"\(first: train/cat/new.mp4 \(train\)\); 1 removed .*; "
                                      r"1 modified .*python -m dcrn_jax.prepare"):
    data.get_info(config)
  capsys.readouterr()
  assert len(builder.ensure(config, rebuild=True).videos["train"]["path"]) == 7
  assert "changed (1 added" in capsys.readouterr().out
  assert data.get_info(config).num_train_examples == 7
  shutil.rmtree(root)
  info = data.get_info(config)
  assert info.num_train_examples == 7 and "is not there; reading the video shards" in (
      capsys.readouterr().out)
  assert next(data.train_batches(config, local_batch_size=2, seed=0, start_step=0))[
      "inputs"].shape == (2, 3, 24, 24, 3)


_KILLED_PREPARE = """
import os, signal, sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
from test_video_shards import _config
from dcrn_jax.datasets.video_shards import builder, decode

real, done = decode.decode_job, []
def decode_job(job):
  result = real(job)
  done.append(job)
  if len(done) == {kill_after}:
    os.kill(os.getpid(), signal.SIGKILL)
  return result
decode.decode_job = decode_job
builder.ensure(_config({video_dir!r}, {data_dir!r}, prepare_workers=1))
"""


def test_a_killed_preparation_resumes_without_redoing_finished_videos(folder, tmp_path, capsys):
  from dcrn_jax.datasets.video_shards import builder, decode  # pylint: disable=g-import-not-at-top
  code = _KILLED_PREPARE.format(repo=str(REPO), tests=str(HERE), kill_after=4, video_dir=folder,
                                data_dir=str(tmp_path))
  killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  config = _config(folder, tmp_path, prepare_workers=1)
  assert not builder.is_prepared(config)
  jobs = []
  real = decode.decode_job
  try:
    decode.decode_job = lambda job: jobs.append(job) or real(job)
    builder.ensure(config)
  finally:
    decode.decode_job = real
  assert "resuming: 4 of 11 videos were decoded before" in capsys.readouterr().out
  assert len(jobs) == 11 - 4 and builder.is_prepared(config)


# ---------------------------------------------------------------- training from shards


def _tiny_run_config(video_dir, data_dir, **data_fields):
  config = kill_worker.video_config(str(data_dir), str(video_dir))
  for key, value in data_fields.items():
    config.data[key] = value
  config.num_train_steps, config.checkpoint_every_steps = 8, 8
  return config


@pytest.mark.slow  # Trains, then evaluates twice: ~1 min of CPU.
def test_same_model_evaluates_alike_from_shards_and_from_the_videos(folder, prepared, tmp_path):
  config = _tiny_run_config(folder, prepared, video_cache=False, num_test_clips=2,
                            num_test_crops=3)
  train.train_and_evaluate(config, str(tmp_path))
  direct = train.evaluate(config, str(tmp_path))
  config.data.video_cache = True
  cached = train.evaluate(config, str(tmp_path))
  assert direct["num_examples"] == cached["num_examples"] == 4
  assert direct["accuracy"] == cached["accuracy"]
  # The clips differ by JPEG's error only: the loss barely moves.
  assert abs(direct["loss"] - cached["loss"]) < 0.01 * max(direct["loss"], 1.0)


@pytest.mark.slow  # Three training processes: ~3 min of CPU.
def test_training_from_shards_resumes_bitwise_after_a_kill(folder, prepared, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")

  def worker(workdir, mode="none", n=0):
    return subprocess.run([sys.executable, str(HERE / "kill_worker.py"), str(workdir),
                           str(prepared), mode, str(n), folder], env=env, capture_output=True,
                          text=True, timeout=600)

  reference = worker(tmp_path / "reference")
  assert reference.returncode == 0 and "finished" in reference.stdout, reference.stderr[-3000:]
  killed = worker(tmp_path / "killed", "step", 6)
  assert killed.returncode == -9, killed.stderr[-3000:]
  resumed = worker(tmp_path / "killed")
  assert "resuming from step 4" in resumed.stdout, resumed.stderr[-3000:]
  config = kill_worker.video_config(str(prepared), folder)
  info = data.get_info(config.data)
  model = train.create_model(config.model, num_classes=info.num_classes,
                             input_shape=info.input_shape)
  from dcrn_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dcrn_jax.state import init_variables  # pylint: disable=g-import-not-at-top
  abstract = jax.eval_shape(lambda: init_variables(model, info.input_shape, jax.random.key(0)))
  ends = [checkpoint.Checkpointer(str(tmp_path / w), read_only=True).restore_variables(
      None, abstract) for w in ("reference", "killed")]
  assert ends[0][0] == ends[1][0] == 12
  jax.tree.map(np.testing.assert_array_equal, ends[0][1], ends[1][1])


# ---------------------------------------------------------------- the command and bad values


def test_prepare_command_and_bad_values(folder, tmp_path, capsys):
  from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
  flags = [f"--config={REPO}/configs/video_gru.py", "--config.data.name=video_folder",
           f"--config.data.video_dir={folder}", f"--config.data.data_dir={tmp_path}",
           "--config.data.image_size=24", "--config.data.resize_short=28"]

  def prepare(*extra):
    return subprocess.run([sys.executable, "-m", "dcrn_jax.prepare", *flags, *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  r = prepare()
  assert r.returncode == 0, r.stderr[-2000:]
  assert "decoded 11/11 videos" in r.stdout and "ready: " in r.stdout
  assert "(test 4, train 6 videos, 2 classes, 1 skipped)" in r.stdout
  config = _config(folder, tmp_path, image_size=24, resize_short=28)
  assert builder.is_prepared(config)
  builder.ensure(config)
  assert "decod" not in capsys.readouterr().out  # Ready: kept as it is.
  bad = prepare("--config.data.jpeg_quality=0")
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1] == (
      "error: data.jpeg_quality is 0; use 1-100 (90 by default; higher keeps more detail and "
      "takes more disk).")
  for source, fields, message in (
      (folder, dict(jpeg_quality=101), "data.jpeg_quality is 101; use 1-100"),
      (folder, dict(prepare_workers=-1), "data.prepare_workers is -1"),
      ("/nowhere", {}, "is not a folder"),
      (folder, dict(eval_split="val"), "val does not exist")):
    with pytest.raises(UserError, match=message):
      data.get_info(_config(source, tmp_path, video_cache=True, **fields))
