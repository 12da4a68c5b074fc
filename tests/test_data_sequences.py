"""moving_digits_seq / moving_fashion_seq: OpenSTL's sequence protocol, drawn in memory."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from dcrn_jax import data
from dcrn_jax.data import sequences
from dcrn_jax.datasets import bouncing, sequences as drawing
from dcrn_jax.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  c = default.get_config().data
  c.name, c.image_size, c.num_frames, c.num_digits = "moving_digits_seq", 16, 4, 2
  c.num_train_examples, c.num_test_examples = 6, 7
  for key, value in overrides.items():
    c[key] = value
  return c


def _stream(config, start_step=0, seed=0, n=6):
  it = data.train_batches(config, local_batch_size=4, seed=seed, start_step=start_step)
  return [next(it)["inputs"] for _ in range(n)]


def test_training_sequences_are_fresh_each_epoch_reproducible_and_resume_exactly():
  config = _config()
  first = _stream(config)
  assert first[0].shape == (4, 4, 16, 16, 1) and first[0].dtype == np.float32
  assert 0 <= first[0].min() and first[0].max() <= 1 and first[0].max() > 0.5
  np.testing.assert_array_equal(np.concatenate(_stream(config)), np.concatenate(first))
  resumed = _stream(config, start_step=3, n=3)
  np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(first[3:]))
  rows = np.concatenate(first)  # 24 rows: 4 epochs of 6 sequences
  assert not np.array_equal(rows[0], rows[6])  # sequence 0 of epochs 0 and 1
  assert not np.array_equal(rows[0], _stream(config, seed=1, n=1)[0][0])
  info = data.get_info(config)
  assert (info.num_classes, info.input_shape, info.num_eval_examples) == (0, (4, 16, 16, 1), 7)


def test_the_test_set_is_fixed_and_split_among_processes_once_each():
  config = _config()
  whole = list(data.eval_batches(config, local_batch_size=4))
  assert sorted(whole[0]) == ["example_id", "inputs", "mask"]
  ids = np.concatenate([b["example_id"][b["mask"] > 0] for b in whole])
  np.testing.assert_array_equal(ids, np.arange(7))
  by_id = {int(i): x for b in whole for i, x, m in zip(b["example_id"], b["inputs"], b["mask"])
           if m}
  parts = [list(data.eval_batches(config, local_batch_size=2, process_index=p, process_count=2))
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == 2  # 4 and 3 rows: same number of batches
  seen = []
  for part in parts:
    for b in part:
      for i, x, m in zip(b["example_id"], b["inputs"], b["mask"]):
        if m:
          np.testing.assert_array_equal(x, by_id[int(i)])
          seen.append(int(i))
  assert sorted(seen) == list(range(7))


def test_items_move_as_openstl_draws_them():
  rng = np.random.default_rng(0)
  sprite = np.full((1, 4, 4), 255, np.uint8)
  video = drawing.render(rng, sprite, num_items=1, num_frames=30, image_size=24)
  tops = [np.argwhere(frame[..., 0])[0] for frame in video]
  steps_ = np.linalg.norm(np.diff(tops, axis=0), axis=1)
  assert np.median(steps_) == pytest.approx(drawing.STEP_FRACTION * 20, abs=1.0)
  # At an edge the item stops on it and turns back.
  pos, vel = bouncing.bounce_step(np.array([[19.0, 1.0]]), np.array([[2.0, -2.0]]), 20.0,
                                  edge="clamp")
  np.testing.assert_array_equal(pos, [[20.0, 0.0]])
  np.testing.assert_array_equal(vel, [[-2.0, 2.0]])


def test_moving_fashion_seq_uses_train_images_for_training_and_test_images_for_testing(
    fake_fashion_idx):
  folder, arrays = fake_fashion_idx(30, 20)
  config = _config(name="moving_fashion_seq", image_size=64, manual_dir=folder)
  np.testing.assert_array_equal(sequences._sprites(config, "train"), arrays["train"][0])
  np.testing.assert_array_equal(sequences._sprites(config, "test"), arrays["test"][0])
  assert next(data.train_batches(config, local_batch_size=2, seed=0, start_step=0))[
      "inputs"].shape == (2, 4, 64, 64, 1)
  with pytest.raises(UserError, match="missing from"):
    data.get_info(_config(name="moving_fashion_seq", image_size=64,
                          manual_dir=str(pathlib.Path(folder) / "nothing")))


@pytest.mark.parametrize("field, value, message", [
    ("num_digits", 0, "num_digits is 0"), ("num_frames", 1, "num_frames is 1"),
    ("image_size", 8, "image_size is 8"), ("num_test_examples", 0, "num_test_examples is 0")])
def test_bad_values_are_user_errors(field, value, message):
  with pytest.raises(UserError, match=message):
    data.get_info(_config(**{field: value}))


def test_sequences_need_no_tensorflow():
  code = ("import sys; from tests.test_data_sequences import _config; from dcrn_jax import data; "
          "next(data.train_batches(_config(), local_batch_size=2, seed=0, start_step=0)); "
          "assert 'tensorflow' not in sys.modules")
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
