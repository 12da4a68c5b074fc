"""Image data: idx files, fashion_mnist prepared from them, augmentation, normalisation.

Offline: idx files are written by the tests, CIFAR-10 is mocked, downloads are made to fail.
"""

import json
import math

import numpy as np
import pytest

from conftest import write_idx
from configs import default
from dcrn_jax import data
from dcrn_jax.datasets.fashion_mnist import idx
from dcrn_jax.errors import UserError

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.


def _config(**overrides):
  config = default.get_config().data
  for key, value in overrides.items():
    config[key] = value
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.fixture
def no_download(monkeypatch):
  """Any TFDS download attempt fails the test at once."""
  from dcrn_jax.data import tfds_source
  from dcrn_jax.data.tf_import import tfds
  monkeypatch.setattr(tfds_source, "_DOWNLOAD_HOST", ("192.0.2.1", 443))  # Unroutable.
  monkeypatch.setattr(tfds.download.DownloadManager, "download",
                      lambda *a, **k: pytest.fail("a download was attempted"))


# ---------------------------------------------------------------- idx files


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  write_idx(tmp_path / name, array)
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / name)), array)


def test_read_idx_rejects_bad_header_and_truncation(tmp_path):
  (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float32 type code
  with pytest.raises(UserError, match="not a uint8 idx file"):
    idx.read_idx(str(tmp_path / "bad"))
  write_idx(tmp_path / "ok", np.zeros((5, 2, 2), np.uint8))
  (tmp_path / "cut").write_bytes((tmp_path / "ok").read_bytes()[:-3])
  with pytest.raises(UserError, match="truncated"):
    idx.read_idx(str(tmp_path / "cut"))


def test_fashion_mnist_prepared_from_idx_files(tmp_path, fake_fashion_idx, no_download):
  from dcrn_jax.data.tf_import import tfds
  folder, arrays = fake_fashion_idx(30, 13)
  config = _config(name="fashion_mnist", data_dir=str(tmp_path / "tfds"), manual_dir=folder,
                   shuffle_buffer=100)
  info = data.get_info(config)
  assert (info.num_classes, info.input_shape) == (10, (28, 28, 1))
  assert (info.num_train_examples, info.num_eval_examples) == (30, 13)
  assert info.class_names[0] == "T-shirt/top" and info.class_names[9] == "Ankle boot"
  # TFDS's own fashion_mnist builder now reads it, with TFDS's features.
  builder = tfds.builder("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  assert builder.is_prepared() and type(builder).__name__ == "FashionMNIST"
  stored = {(ex["image"][..., 0].tobytes(), int(ex["label"]))
            for ex in tfds.as_numpy(builder.as_dataset(split="test"))}
  assert stored == {(im.tobytes(), int(l)) for im, l in zip(*arrays["test"])}
  # One train epoch (30 rows in batches of 6) holds every train image once, with its label.
  batches = _take(data.train_batches(config, local_batch_size=6, seed=0, start_step=0), 5)
  seen = sorted((np.rint(x[..., 0] * 255).astype(np.uint8).tobytes(), int(l))
                for b in batches for x, l in zip(b["inputs"], b["label"]))
  assert seen == sorted((im.tobytes(), int(l)) for im, l in zip(*arrays["train"]))


def test_fashion_mnist_eval_two_processes_count_each_example_once(tmp_path, fake_fashion_idx,
                                                                   no_download):
  folder, arrays = fake_fashion_idx(20, 13)
  config = _config(name="fashion_mnist", data_dir=str(tmp_path / "tfds"), manual_dir=folder)
  keys = []
  for p in range(2):
    batches = list(data.eval_batches(config, local_batch_size=4, process_index=p,
                                     process_count=2))
    assert len(batches) == 2  # Shares of 7 and 6 rows: two batches of 4 each.
    keys += [np.rint(x[..., 0] * 255).astype(np.uint8).tobytes()
             for b in batches for x, m in zip(b["inputs"], b["mask"]) if m]
  assert sorted(keys) == sorted(im.tobytes() for im in arrays["test"][0])


def test_fashion_mnist_manual_dir_without_files_is_a_user_error(tmp_path, no_download):
  config = _config(name="fashion_mnist", data_dir=str(tmp_path / "tfds"),
                   manual_dir=str(tmp_path))
  with pytest.raises(UserError, match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
    data.get_info(config)


# ---------------------------------------------------------------- augmentation


def _augment(image, seed, **fields):
  from dcrn_jax.data import augment
  from dcrn_jax.data.tf_import import tf
  out = augment.train_augment(tf.constant(image, tf.float32), tf.constant(seed, tf.int64),
                              _config(**fields))
  return out.numpy()


def test_crop_with_padding_is_a_shift_of_at_most_the_padding():
  image = np.zeros((16, 16, 1), np.float32)
  image[6, 9] = 1.0
  shifts = set()
  for s in range(40):
    out = _augment(image, [s, 7], augment_crop_padding=3)
    assert out.shape == (16, 16, 1) and out.min() >= 0 and out.max() <= 1
    (row,), (col,) = np.nonzero(out[..., 0])  # The pixel is never cut off here.
    shifts.add((row - 6, col - 9))
  assert all(abs(dr) <= 3 and abs(dc) <= 3 for dr, dc in shifts)
  assert len(shifts) > 10  # Random, not one fixed shift.


def test_flip_mirrors_left_right_about_half_the_time():
  image = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
  outcomes = []
  for s in range(40):
    out = _augment(image, [s, 1], augment_flip=True)
    assert np.array_equal(out, image) or np.array_equal(out, image[:, ::-1])
    outcomes.append(np.array_equal(out, image[:, ::-1]))
  assert 8 < sum(outcomes) < 32


def test_rotation_keeps_the_centre_and_stays_within_the_angle():
  size = 41
  image = np.zeros((size, size, 1), np.float32)
  image[20, 20] = 1.0  # The centre.
  image[20, 35] = 1.0  # 15 px right of it.
  angles = []
  for s in range(30):
    out = _augment(image, [s, 3], augment_rotation_degrees=10.0)[..., 0]
    assert out[20, 20] > 0.99
    far = out.copy()
    far[18:23, 18:23] = 0
    rows, cols = np.indices(far.shape)
    r, c = (far * rows).sum() / far.sum() - 20, (far * cols).sum() / far.sum() - 20
    assert abs(math.hypot(r, c) - 15) < 0.5  # Rotated about the centre.
    angles.append(math.degrees(math.atan2(-r, c)))
  assert max(abs(a) for a in angles) <= 10.0 + 0.5
  assert min(angles) < -3 and max(angles) > 3


def test_augment_and_normalise_check_their_fields():
  from dcrn_jax.data import augment
  with pytest.raises(UserError, match="normalize_mean"):
    augment.check(_config(normalize_mean=(0.5, 0.5), normalize_std=(0.2, 0.2)), 3)
  with pytest.raises(UserError, match="augment_rotation_degrees"):
    augment.check(_config(augment_rotation_degrees=-1.0), 1)
  with pytest.raises(UserError, match="positive"):
    augment.check(_config(normalize_mean=(0.5,), normalize_std=(0.0,)), 1)


def test_cifar10_augmented_train_deterministic_and_eval_untouched(tmp_path, mock_cifar10):
  plain = _config(name="cifar10", data_dir=str(tmp_path / "unused"))
  aug = _config(name="cifar10", data_dir=str(tmp_path / "unused"), augment_crop_padding=4,
                augment_flip=True, augment_rotation_degrees=8.0,
                normalize_mean=(0.5, 0.4, 0.3), normalize_std=(0.25, 0.25, 0.5))
  with mock_cifar10(12):
    base = _take(data.train_batches(plain, local_batch_size=4, seed=3, start_step=0), 6)
    runs = [_take(data.train_batches(aug, local_batch_size=4, seed=3, start_step=0), 6)
            for _ in range(2)]
    resumed = _take(data.train_batches(aug, local_batch_size=4, seed=3, start_step=4), 2)
    evals = [list(data.eval_batches(c, local_batch_size=5)) for c in (plain, aug)]
  for b in runs[0]:
    assert b["inputs"].shape == (4, 32, 32, 3) and b["inputs"].dtype == np.float32
  # Normalised range: [0, 1] maps to [-mean/std, (1-mean)/std] per channel.
  x = np.concatenate([b["inputs"] for b in runs[0]])
  assert np.all(x.min(axis=(0, 1, 2)) >= np.array([-2, -1.6, -0.6]) - 1e-5)
  assert np.all(x.max(axis=(0, 1, 2)) <= np.array([2, 2.4, 1.4]) + 1e-5)
  for a, b in zip(runs[0], runs[1]):  # Same seed: the same augmentation.
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  for a, b in zip(runs[0][4:], resumed):  # Resuming at step 4 replays batches 4 and 5.
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  # Same order and labels as without augmentation, but different pixels.
  assert all(np.array_equal(a["label"], b["label"]) for a, b in zip(base, runs[0]))
  undone = np.concatenate([b["inputs"] for b in runs[0]]) * [0.25, 0.25, 0.5] + [0.5, 0.4, 0.3]
  assert not np.allclose(undone, np.concatenate([b["inputs"] for b in base]), atol=1e-3)
  # Eval: normalised only, never augmented.
  for a, b in zip(*evals):
    np.testing.assert_allclose(b["inputs"][b["mask"] > 0] * [0.25, 0.25, 0.5] + [0.5, 0.4, 0.3],
                               a["inputs"][a["mask"] > 0], atol=1e-5)


def test_write_label_map(tmp_path):
  info = data.DatasetInfo(num_classes=3, input_shape=(4, 4, 1), num_train_examples=1,
                          num_eval_examples=1, class_names=("cat", "dog", "T-shirt/top"))
  path = data.write_label_map(info, str(tmp_path))
  assert json.loads(open(path, encoding="utf-8").read()) == {"0": "cat", "1": "dog",
                                                             "2": "T-shirt/top"}


def test_manual_dir_reaches_tfds_download_config(tmp_path, monkeypatch):
  from dcrn_jax.data import tfds_source
  from dcrn_jax.data.tf_import import tfds
  seen = []

  def fake_prepare(self, download_config=None, **kwargs):
    del kwargs
    seen.append((self.name, download_config.manual_dir))
    raise AssertionError("manual files missing")  # What TFDS raises for an empty manual_dir.

  monkeypatch.setattr(tfds_source, "_host_reachable", lambda *a: True)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fake_prepare)
  config = _config(name="mnist", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "m"))
  with pytest.raises(UserError, match="data.manual_dir"):
    data.get_info(config)
  assert seen == [("mnist", str(tmp_path / "m"))]
