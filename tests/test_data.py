"""Tests of dcrn_jax.data and moving_digits: the tf.data pipelines, synthetic data, errors.

All offline: datasets are generated into tmp dirs, CIFAR-10 is mocked, network checks are
pointed at an unroutable address.
"""

import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from configs import default
from dcrn_jax import data
from dcrn_jax.data import common
from dcrn_jax.datasets import bouncing
from dcrn_jax.datasets.moving_digits import render
from dcrn_jax.errors import UserError

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  config = default.get_config().data
  for key, value in overrides.items():
    config[key] = value
  return config


def _md_config(data_dir, **overrides):
  fields = dict(name="moving_digits", data_dir=str(data_dir), image_size=32, num_frames=4,
                num_train_examples=40, num_test_examples=21, shuffle_buffer=1000)
  fields.update(overrides)
  return _config(**fields)


def _raw(config, split):
  """The stored examples of a prepared moving_digits split, in file order."""
  from dcrn_jax.data.tf_import import tfds
  from dcrn_jax.datasets.moving_digits import builder
  ds = builder.make_builder(config).as_dataset(split=split, shuffle_files=False)
  return list(tfds.as_numpy(ds))


def _keys(inputs):
  """One hashable key per example of a float batch: the uint8 bytes it was scaled from."""
  return [np.rint(x * 255).astype(np.uint8).tobytes() for x in inputs]


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _direction(drow, dcol):
  """Nearest of the 8 compass directions of a (row, col) shift; north is decreasing row."""
  return round(math.atan2(-drow, dcol) / (math.pi / 4)) % 8


@pytest.fixture(scope="module")
def md(tmp_path_factory):
  """A small prepared one-digit moving_digits config: 40 train / 21 test clips of 4x32x32."""
  config = _md_config(tmp_path_factory.mktemp("md"))
  data.get_info(config)
  return config


# ---------------------------------------------------------------- moving_digits content


def test_render_shapes_and_fully_inside_digits():
  examples = list(render.generate_examples("train", 5, seed=3, num_frames=6, image_size=16,
                                           num_digits=2))
  assert [i for i, _ in examples] == list(range(5))
  size = render.digit_size(16)
  for _, ex in examples:
    assert ex["video"].shape == (6, 16, 16, 1) and ex["video"].dtype == np.uint8
    assert ex["positions"].shape == (6, 2, 2) and ex["positions"].dtype == np.float32
    assert np.all(ex["positions"] >= 0) and np.all(ex["positions"] <= 16 - size)
    assert np.all(ex["video"].reshape(6, -1).max(axis=1) > 100)  # Every frame shows a digit.


def test_render_motion_is_constant_velocity_bouncing_off_edges():
  bounces = 0
  unit = render.direction_vectors()
  for _, ex in render.generate_examples("test", 8, seed=0, num_frames=40, image_size=16,
                                        num_digits=2):
    max_pos = 16 - render.digit_size(16)
    pos = ex["positions"].astype(np.float64)  # (T, 2 digits, 2)
    for k, direction in enumerate(ex["directions"]):
      # A reflected step is never longer than a free one, so the longest step is the speed.
      speed = np.linalg.norm(np.diff(pos[:, k], axis=0), axis=1).max()
      lo, hi = bouncing.speed_range(16)
      assert lo - 1e-4 <= speed <= hi + 1e-4
      free = pos[0, k] + np.arange(40)[:, None] * speed * unit[direction]
      # Bouncing between 0 and max_pos folds the free path into a triangle wave.
      folded = max_pos - np.abs(np.mod(free, 2 * max_pos) - max_pos)
      np.testing.assert_allclose(pos[:, k], folded, atol=1e-3)
      bounces += np.any((free < 0) | (free > max_pos))
  assert bounces >= 8


def test_moving_digits_info_and_features(md):
  info = data.get_info(md)
  assert info == data.DatasetInfo(
      num_classes=8, input_shape=(4, 32, 32, 1), num_train_examples=40, num_eval_examples=21,
      class_names=("east", "north_east", "north", "north_west", "west", "south_west", "south",
                   "south_east"))
  train = _raw(md, "train")
  assert len(train) == 40
  for ex in train:
    assert ex["video"].shape == (4, 32, 32, 1) and ex["video"].dtype == np.uint8
    assert 0 <= ex["label"] < 8
    assert ex["positions"].shape == (4, 1, 2)
    for key in ("digits", "directions", "source_index"):
      assert ex[key].shape == (1,)
  assert len({int(ex["label"]) for ex in train}) >= 5  # Directions vary.


def test_moving_digits_deterministic(tmp_path):
  arrays = []
  for name in ("a", "b"):
    config = _md_config(tmp_path / name, image_size=16, num_frames=3, num_train_examples=6,
                        num_test_examples=4, num_digits=2)
    data.get_info(config)
    arrays.append(_raw(config, "train") + _raw(config, "test"))
  assert len(arrays[0]) == 10
  for ex_a, ex_b in zip(*arrays):
    assert ex_a.keys() == ex_b.keys()
    for key in ex_a:
      np.testing.assert_array_equal(ex_a[key], ex_b[key])
  other_seed = next(render.generate_examples("train", 1, seed=1, num_frames=3, image_size=16,
                                             num_digits=2))[1]
  assert not np.array_equal(other_seed["video"], arrays[0][0]["video"])


def test_train_and_test_use_disjoint_source_images(md):
  train = {int(i) for ex in _raw(md, "train") for i in ex["source_index"]}
  test = {int(i) for ex in _raw(md, "test") for i in ex["source_index"]}
  assert train and test and not train & test
  classes = np.repeat(np.arange(10), 180)[:1797]
  train_pool, test_pool = render.split_sources(classes, "train"), render.split_sources(
      classes, "test")
  assert not set(train_pool) & set(test_pool)
  assert len(train_pool) + len(test_pool) == 1797
  assert 0.75 < len(train_pool) / 1797 < 0.85


def test_one_digit_label_is_direction_of_motion(md):
  checked = 0
  for ex in _raw(md, "train") + _raw(md, "test"):
    pos = ex["positions"][:, 0].astype(np.float64)
    step0, step1 = pos[1] - pos[0], pos[2] - pos[1]
    if not np.allclose(step0, step1, atol=1e-4):
      continue  # A bounce in the first two steps reflects the motion.
    assert _direction(*step0) == ex["label"] == ex["directions"][0]
    # What a model sees: the intensity centroid moves the same way over two frames.
    frames = ex["video"][[0, 2], ..., 0].astype(np.float64)
    rows, cols = np.indices(frames.shape[1:])
    centroid = [((f * rows).sum() / f.sum(), (f * cols).sum() / f.sum()) for f in frames]
    assert _direction(*np.subtract(centroid[1], centroid[0])) == ex["label"]
    checked += 1
  assert checked >= 10


def test_two_digit_label_rule(tmp_path):
  config = _md_config(tmp_path, image_size=16, num_frames=3, num_train_examples=30,
                      num_test_examples=2, num_digits=2)
  assert data.get_info(config).input_shape == (3, 16, 16, 1)
  examples = _raw(config, "train")
  smaller_first = 0
  for ex in examples:
    assert ex["digits"].shape == ex["directions"].shape == ex["source_index"].shape == (2,)
    assert ex["digits"][0] != ex["digits"][1]
    assert ex["label"] == ex["directions"][np.argmin(ex["digits"])]
    smaller_first += ex["digits"][0] < ex["digits"][1]
    assert ex["positions"].shape == (3, 2, 2)
  # The rule is not "the first digit": the smaller class is sometimes the second one.
  assert 0 < smaller_first < len(examples)
  # The two digits' directions disagree often, so the label needs the digit classes.
  assert sum(ex["directions"][0] != ex["directions"][1] for ex in examples) >= 15


# ---------------------------------------------------------------- train_batches


def test_train_batches_shapes_range_and_first_epoch(md):
  batches = _take(data.train_batches(md, local_batch_size=8, seed=0, start_step=0), 5)
  for b in batches:
    assert set(b) == {"inputs", "label"}
    assert b["inputs"].shape == (8, 4, 32, 32, 1) and b["inputs"].dtype == np.float32
    assert b["label"].shape == (8,) and b["label"].dtype == np.int32
    assert b["inputs"].min() >= 0.0 and 0.9 < b["inputs"].max() <= 1.0
  # The first 40 rows are one epoch: every train clip once, each with its own label.
  stored = {ex["video"].tobytes(): int(ex["label"]) for ex in _raw(md, "train")}
  seen = {k: int(l) for b in batches for k, l in zip(_keys(b["inputs"]), b["label"])}
  assert seen == stored


def test_train_resume_matches_uninterrupted_stream(md):
  # 40 clips in batches of 6: batch 6 straddles the first epoch boundary (rows 36..41).
  full = _take(data.train_batches(md, local_batch_size=6, seed=5, start_step=0), 16)
  for start in (1, 6, 7, 14):
    resumed = _take(data.train_batches(md, local_batch_size=6, seed=5, start_step=start),
                    16 - start)
    for a, b in zip(full[start:], resumed):
      np.testing.assert_array_equal(a["inputs"], b["inputs"])
      np.testing.assert_array_equal(a["label"], b["label"])


def test_train_order_depends_on_seed_and_epoch(md):
  def epochs(seed):
    rows = [k for b in _take(data.train_batches(md, local_batch_size=8, seed=seed,
                                                start_step=0), 10) for k in _keys(b["inputs"])]
    return rows[:40], rows[40:]

  first, second = epochs(0)
  other, _ = epochs(1)
  assert sorted(first) == sorted(second) == sorted(other)
  assert first != second  # Each epoch is reshuffled.
  assert first != other  # The seed changes the order.
  assert epochs(0)[0] == first  # And nothing else does.


def test_train_processes_read_disjoint_halves(md):
  shares = []
  for index in range(2):
    stream = data.train_batches(md, local_batch_size=4, seed=0, start_step=0,
                                process_index=index, process_count=2)
    shares.append([k for b in _take(stream, 5) for k in _keys(b["inputs"])])
  assert len(set(shares[0])) == len(set(shares[1])) == 20
  assert not set(shares[0]) & set(shares[1])
  assert set(shares[0]) | set(shares[1]) == {ex["video"].tobytes() for ex in _raw(md, "train")}


# ---------------------------------------------------------------- eval_batches


def _check_eval_batch(batch, batch_size, input_shape):
  assert batch["inputs"].shape == (batch_size, *input_shape)
  assert batch["inputs"].dtype == batch["mask"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  padding = batch["mask"] == 0
  assert np.all(batch["inputs"][padding] == 0) and np.all(batch["label"][padding] == 0)
  assert set(np.unique(batch["mask"])) <= {0.0, 1.0}


def test_eval_single_process_in_order_with_padding(md):
  batches = list(data.eval_batches(md, local_batch_size=8))
  assert len(batches) == 3
  for b in batches:
    _check_eval_batch(b, 8, (4, 32, 32, 1))
  assert [b["mask"].sum() for b in batches] == [8, 8, 5]
  real = [(k, int(l)) for b in batches
          for k, l, m in zip(_keys(b["inputs"]), b["label"], b["mask"]) if m]
  assert real == [(ex["video"].tobytes(), int(ex["label"])) for ex in _raw(md, "test")]


@pytest.mark.parametrize("batch_size", [4, 5])
def test_eval_two_processes_cover_odd_split_once(md, batch_size):
  per_process = [list(data.eval_batches(md, local_batch_size=batch_size, process_index=i,
                                        process_count=2)) for i in range(2)]
  # 21 clips: shares of 11 and 10; with batch 5, process 1 needs an all-masked third batch.
  assert len(per_process[0]) == len(per_process[1]) == math.ceil(11 / batch_size)
  keys = []
  for batches in per_process:
    for b in batches:
      _check_eval_batch(b, batch_size, (4, 32, 32, 1))
      keys += [k for k, m in zip(_keys(b["inputs"]), b["mask"]) if m]
  assert sorted(keys) == sorted(ex["video"].tobytes() for ex in _raw(md, "test"))


def test_eval_example_id_is_the_index_in_the_whole_split(md):
  stored = [ex["video"].tobytes() for ex in _raw(md, "test")]
  seen = {}
  for p in range(3):
    for b in data.eval_batches(md, local_batch_size=4, process_index=p, process_count=3):
      assert b["example_id"].dtype == np.int32
      assert np.all(b["example_id"][b["mask"] == 0] == -1)
      for k, i, m in zip(_keys(b["inputs"]), b["example_id"], b["mask"]):
        if m:
          seen[int(i)] = k
  assert seen == dict(enumerate(stored))


# ---------------------------------------------------------------- the table and the process split


def test_unknown_name_error_lists_the_names_in_the_table(tmp_path):
  with pytest.raises(UserError, match="no_such_dataset_xyz") as error:
    data.get_info(_config(name="no_such_dataset_xyz", data_dir=str(tmp_path)))
  assert data.names() and all(name in str(error.value) for name in data.names())


def test_table_entries_name_modules_with_what_they_promise():
  for name, entry in data.SOURCES.items():
    assert data.lookup(name) is entry
    module = data.load(entry.module)
    assert all(callable(getattr(module, f)) for f in ("get_info", "train_batches", "eval_batches"))
    if entry.builder:
      assert callable(data.load(entry.builder).make_builder)
    if entry.offline:
      offline = data.load(entry.offline)
      assert callable(offline.prepare_offline) and offline.OFFLINE_HINT
  assert set(data.names(ours=True)) == {"moving_digits", "moving_fashion"}
  # Any other name is a TFDS dataset; a TFDS name with a version or config matches its entry,
  # but ours take their settings from the `data` fields, not from the name.
  assert data.lookup("cifar10") == data.lookup("mnist:3.0.1") == data.Source(
      "dcrn_jax.data.tfds_source")
  assert data.lookup("fashion_mnist:3.0.1") is data.SOURCES["fashion_mnist"]
  assert not data.lookup("moving_digits:1.0.0").builder


@pytest.mark.parametrize("num, count", [(0, 1), (1, 1), (7, 1), (7, 2), (21, 2), (10, 3),
                                        (2, 3), (13, 4), (12, 12)])
def test_eval_shares_cover_every_example_once_in_equally_many_batches(num, count):
  shares = [common.process_share(num, process_index=p, process_count=count, train=False)
            for p in range(count)]
  rows = np.concatenate([s.rows() for s in shares])
  assert sorted(rows.tolist()) == list(range(num))
  assert max(s.count for s in shares) - min(s.count for s in shares) <= 1
  for batch_size in (1, 3, 4):
    for views in (1, 6):
      batches = {s.num_batches(batch_size, views) for s in shares}
      assert len(batches) == 1  # The same number on every process.
      assert batches.pop() == -(-max(s.count for s in shares) * views // batch_size)
  if count == 1:  # One process: every row, in the split's order.
    assert shares[0].rows().tolist() == list(range(num))


@pytest.mark.parametrize("num, count", [(1, 1), (7, 1), (7, 2), (21, 2), (10, 3), (13, 4)])
def test_train_shares_are_equal_and_disjoint_and_drop_the_remainder(num, count):
  shares = [common.process_share(num, process_index=p, process_count=count, train=True)
            for p in range(count)]
  assert {s.count for s in shares} == {num // count}
  rows = np.concatenate([s.rows() for s in shares])
  assert sorted(rows.tolist()) == list(range(num // count * count))  # The last num % count.
  if count == 1:
    assert shares[0].rows().tolist() == list(range(num))


def test_train_share_too_small_is_a_user_error():
  with pytest.raises(UserError, match="too few to give each of 3 processes one"):
    common.process_share(2, process_index=0, process_count=3, train=True, split="The split")


# ---------------------------------------------------------------- synthetic


def test_synthetic_source_never_imports_tensorflow():
  script = textwrap.dedent("""
      import sys
      from configs import default
      from dcrn_jax import data
      config = default.get_config().data
      config.name = "synthetic"
      config.synthetic_shape = (3, 8, 8, 2)
      config.synthetic_num_examples = 10
      info = data.get_info(config)
      assert info.input_shape == (3, 8, 8, 2) and info.num_classes == 8, info
      batch = next(data.train_batches(config, local_batch_size=4, seed=0, start_step=3))
      assert batch["inputs"].shape == (4, 3, 8, 8, 2), batch["inputs"].shape
      assert sum(b["mask"].sum() for b in data.eval_batches(config, local_batch_size=4)) == 10
      loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow",
                                                                     "tensorflow_datasets"))
      print("LOADED", loaded)
      """)
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert "LOADED []" in result.stdout


def test_synthetic_batches_resume_processes_and_eval():
  config = _config(name="synthetic", synthetic_shape=(2, 4, 4, 1), synthetic_num_examples=15,
                   synthetic_num_classes=3)
  full = _take(data.train_batches(config, local_batch_size=4, seed=1, start_step=0), 9)
  assert full[0]["inputs"].dtype == np.float32 and full[0]["label"].dtype == np.int32
  assert all(0 <= b["inputs"].min() and b["inputs"].max() <= 1 for b in full)
  assert all(set(b["label"]) <= {0, 1, 2} for b in full)
  resumed = _take(data.train_batches(config, local_batch_size=4, seed=1, start_step=5), 4)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  other = next(data.train_batches(config, local_batch_size=4, seed=2, start_step=0))
  assert not np.array_equal(other["inputs"], full[0]["inputs"])
  halves = [{k for b in _take(data.train_batches(config, local_batch_size=7, seed=0,
                                                 start_step=0, process_index=i,
                                                 process_count=2), 1)
             for k in _keys(b["inputs"])} for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == 7 and not halves[0] & halves[1]
  evals = [list(data.eval_batches(config, local_batch_size=3, process_index=i,
                                  process_count=2)) for i in range(2)]
  assert len(evals[0]) == len(evals[1]) == 3  # Shares of 8 and 7.
  keys = [k for batches in evals for b in batches
          for k, m in zip(_keys(b["inputs"]), b["mask"]) if m]
  assert len(keys) == len(set(keys)) == 15


# ---------------------------------------------------------------- TFDS datasets and errors


def test_unprepared_tfds_dataset_offline_raises_user_error_fast(tmp_path, monkeypatch):
  from dcrn_jax.data import tfds_source
  from dcrn_jax.data.tf_import import tfds
  # An unroutable address (TEST-NET-1): behaves as "no network" on every machine.
  monkeypatch.setattr(tfds_source, "_DOWNLOAD_HOST", ("192.0.2.1", 443))
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda *a, **k: pytest.fail("a download was attempted"))
  start = time.monotonic()
  with pytest.raises(UserError, match="not prepared") as error:
    data.get_info(_config(name="mnist", data_dir=str(tmp_path)))
  assert time.monotonic() - start < 8
  assert "'mnist'" in str(error.value) and str(tmp_path) in str(error.value)
  assert "tfds build mnist" in str(error.value)


def test_unknown_dataset_name_raises_user_error(tmp_path):
  with pytest.raises(UserError, match="no_such_dataset_xyz"):
    data.get_info(_config(name="no_such_dataset_xyz", data_dir=str(tmp_path)))


def test_cifar10_with_mocked_tfds(tmp_path, mock_cifar10):
  num = 10
  config = _config(name="cifar10", data_dir=str(tmp_path / "unused"))
  with mock_cifar10(num):
    info = data.get_info(config)
    assert (info.input_shape, info.num_classes, info.num_eval_examples) == ((32, 32, 3), 10, num)
    for b in _take(data.train_batches(config, local_batch_size=4, seed=0, start_step=0), 3):
      assert b["inputs"].shape == (4, 32, 32, 3) and b["inputs"].dtype == np.float32
      assert 0 <= b["inputs"].min() and b["inputs"].max() <= 1 and b["inputs"].max() > 0.5
      assert b["label"].dtype == np.int32 and np.all((0 <= b["label"]) & (b["label"] < 10))
    batches = list(data.eval_batches(config, local_batch_size=4))
  assert len(batches) == 3 and sum(b["mask"].sum() for b in batches) == num
  for b in batches:
    _check_eval_batch(b, 4, (32, 32, 3))


@pytest.mark.parametrize("overrides, match", [
    (dict(num_digits=3), "num_digits"),
    (dict(num_frames=1), "num_frames"),
    (dict(shuffle_buffer=0), "shuffle_buffer"),
])
def test_bad_moving_digits_fields_raise_user_error(md, overrides, match):
  config = _md_config(md.data_dir, **overrides)
  with pytest.raises(UserError, match=match):
    next(data.train_batches(config, local_batch_size=2, seed=0, start_step=0))


@pytest.mark.parametrize("name", ["synthetic", "moving_digits"])
@pytest.mark.parametrize("kwargs, match", [
    (dict(local_batch_size=0), "batch size"),
    (dict(local_batch_size=2, process_index=2, process_count=2), "process_index"),
])
def test_bad_batch_arguments_raise_user_error(md, name, kwargs, match):
  config = _md_config(md.data_dir, name=name)
  with pytest.raises(UserError, match=match):
    data.eval_batches(config, **kwargs)
  with pytest.raises(UserError, match=match):
    data.train_batches(config, seed=0, start_step=0, **kwargs)
