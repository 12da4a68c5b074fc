"""Feeding the steps: uint8 pixels scaled on the device, the feeding thread, and splits resident
on the device (data.on_device) giving the streamed batches bit for bit."""

import importlib
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import video_gru
from dcrn_jax import UserError, data, feeding, input_scaling, parallel, train
from dcrn_jax.data import preprocess

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = pathlib.Path(__file__).resolve().parents[1]


def synthetic_config(**overrides):
  c = video_gru.get_config()
  c.data.name, c.data.synthetic_shape, c.data.synthetic_num_examples = "synthetic", (3, 16, 16, 1), 96
  c.model.stem_stride, c.model.conv_features = 2, (4, 8)
  c.model.embed_dim, c.model.hidden_size = 16, 16
  c.batch_size, c.eval_batch_size = 8, 16
  c.num_train_steps, c.log_every_steps, c.eval_every_steps = 30, 10, 0
  c.checkpoint_every_steps, c.optim.warmup_steps = 0, 2
  c.progress_bar = False
  for k, v in overrides.items():
    *parents, leaf = k.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def fit_params(config, workdir):
  state, metrics = train.fit(config, str(workdir))
  return jax.tree.map(np.asarray, state.params), metrics


def test_model_input_scales_pixels_as_the_numpy_rule_does():
  d = synthetic_config().data
  d.normalize_mean, d.normalize_std = (0.3,), (0.2,)
  pixels = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
  on_device = np.asarray(jax.jit(lambda x: input_scaling.model_input(
      x, *feeding.scaling(d)))(pixels))
  # XLA may divide by std as a multiplication: within float32 rounding, not bitwise.
  np.testing.assert_allclose(on_device, preprocess.to_model_input(pixels, d), rtol=1e-6,
                             atol=1e-6)
  d.normalize_mean, d.normalize_std = (), ()
  np.testing.assert_allclose(input_scaling.model_input(pixels),
                             preprocess.to_model_input(pixels, d), rtol=1e-7, atol=0)
  floats = pixels.astype(np.float32) / 255
  np.testing.assert_array_equal(input_scaling.model_input(floats), floats)  # Already scaled.


def test_streams_carry_uint8_pixels_and_scaled_ones_on_request():
  d = synthetic_config().data
  raw = next(data.train_batches(d, local_batch_size=4, seed=0, start_step=0, scaled=False))
  scaled = next(data.train_batches(d, local_batch_size=4, seed=0, start_step=0))
  assert raw["inputs"].dtype == np.uint8 and scaled["inputs"].dtype == np.float32
  np.testing.assert_array_equal(scaled["inputs"], raw["inputs"].astype(np.float32) / 255)
  rows = next(data.train_indices(d, local_batch_size=4, seed=0, start_step=0))["index"]
  np.testing.assert_array_equal(data.split_pixels(d, train=True, start=0, stop=96)["inputs"][rows],
                                raw["inputs"])


def test_a_failure_in_the_feeding_thread_is_raised_in_the_loop():
  mesh = parallel.create_mesh()

  def batches():
    yield {"x": np.zeros((2,), np.float32)}
    raise UserError("the data went away")

  stream = parallel.prefetch_to_device(batches(), mesh, 2)
  assert next(stream)["x"].shape == (2,)
  with pytest.raises(UserError, match="the data went away"):
    next(stream)
  stream.close()


@pytest.mark.parametrize("augment", [False, True])
def test_device_augmentation_moves_pixels_and_repeats_for_a_key(augment):
  c = synthetic_config()
  c.data.augment_crop_padding, c.data.augment_flip = (2, True) if augment else (0, False)
  fn = feeding.augment_fn(train.feed_spec(c))
  if not augment:
    assert fn is None
    return
  pixels = np.random.default_rng(0).integers(1, 256, (16, 8, 8, 1), dtype=np.uint8)
  out = np.asarray(jax.jit(fn)(pixels, jax.random.key(3)))
  np.testing.assert_array_equal(out, np.asarray(jax.jit(fn)(pixels, jax.random.key(3))))
  assert not np.array_equal(out, np.asarray(jax.jit(fn)(pixels, jax.random.key(4))))
  assert not np.array_equal(out, pixels)
  # Every output pixel is an input pixel of the same image or crop padding (0).
  for x, y in zip(pixels, out):
    assert set(np.unique(y)) <= set(np.unique(x)) | {0}


def test_on_device_training_equals_streaming_bitwise(tmp_path, capsys):
  params = {}
  for mode in (True, False):
    params[mode], metrics = fit_params(synthetic_config(**{"data.on_device": mode}),
                                       tmp_path / str(mode))
    params[mode] = (params[mode], metrics)
  jax.tree.map(np.testing.assert_array_equal, params[True][0], params[False][0])
  assert params[True][1] == params[False][1]  # Eval: the resident split scores the same.
  assert "first eval step (with compilation) took" in capsys.readouterr().out


@pytest.mark.needs_tf  # moving_digits and cifar10 are TFDS datasets.
def test_moving_digits_on_device_equals_streaming_bitwise(tmp_path):
  c = video_gru.get_config()
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.num_frames, c.data.image_size = 3, 16
  c.data.num_train_examples, c.data.num_test_examples = 64, 24
  c.data.shuffle_buffer = 40  # Smaller than the split: the shuffle order itself is compared.
  c.model.stem_stride, c.model.conv_features = 2, (4,)
  c.model.embed_dim, c.model.hidden_size = 8, 8
  c.batch_size, c.eval_batch_size = 8, 16
  c.num_train_steps, c.log_every_steps, c.eval_every_steps = 30, 15, 0
  c.checkpoint_every_steps, c.progress_bar = 0, False
  runs = {}
  for mode in (True, False):
    c.data.on_device = mode
    runs[mode] = fit_params(c, tmp_path / str(mode))
  jax.tree.map(np.testing.assert_array_equal, runs[True][0], runs[False][0])
  assert runs[True][1] == runs[False][1]


def test_auto_streams_what_does_not_fit_and_says_so(tmp_path, capsys):
  config = synthetic_config(**{"data.on_device_max_bytes": 10_000, "num_train_steps": 2})
  fit_params(config, tmp_path)
  out = capsys.readouterr().out
  assert "data: split 'train' streams from the host (its 96 examples take" in out


_TWO_DEVICES = """
import sys, jax, numpy as np
sys.path.insert(0, {root!r})
from tests.test_feed import synthetic_config
from dcrn_jax import train
out = {{}}
for mode in (True, False):
  state, metrics = train.fit(synthetic_config(**{{"data.on_device": mode}}), {work!r} + str(mode))
  out[mode] = jax.tree.leaves(jax.tree.map(np.asarray, state.params)), metrics
assert jax.device_count() == 2
assert all(np.array_equal(a, b) for a, b in zip(out[True][0], out[False][0]))
assert out[True][1] == out[False][1]
print("same")
"""


@pytest.mark.slow  # ~25 s: a subprocess with two CPU devices, four short runs.
def test_two_devices_gather_the_streamed_batches(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=str(ROOT))
  r = subprocess.run([sys.executable, "-c", _TWO_DEVICES.format(root=str(ROOT),
                                                                work=str(tmp_path / "run"))],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0 and "same" in r.stdout, r.stderr[-3000:]


def narrow(model):
  """The model config with every layer kept but 4 to 8 features wide: the OpenSTL-sized
  forecasters take minutes a step on a CPU; what a data-path comparison needs is the config's
  data, batch and layer kinds, which the width does not change."""
  for key in ("conv_features", "convlstm_features"):
    model[key] = (4,) * len(model[key])
  for key in ("embed_dim", "hidden_size", "head_hidden"):
    model[key] = min(model[key], 8)


@pytest.mark.needs_tf  # moving_digits and cifar10 are TFDS datasets.
@pytest.mark.slow  # Every config of configs/ twice (30 steps each): ~30 min on 2 busy cores.
@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                                        if p.stem not in ("__init__", "default")))
def test_every_config_trains_the_same_on_device(name, tmp_path, mock_cifar10):
  module = importlib.import_module(f"configs.{name}")
  c = module.get_config()
  narrow(c.model)
  c.num_train_steps, c.log_every_steps, c.eval_every_steps = 30, 10, 0
  c.checkpoint_every_steps, c.progress_bar, c.num_epochs = 0, False, 0.0
  c.log_every_epochs = c.eval_every_epochs = c.checkpoint_every_epochs = 0.0
  c.data.data_dir = str(tmp_path / "tfds")
  if "num_train_examples" in c.data and c.data.name.startswith("moving_"):
    c.data.num_train_examples, c.data.num_test_examples = 256, 32
  # Without augmentation: on the device it draws from a random stream of its own.
  c.data.augment_crop_padding, c.data.augment_flip = 0, False
  with mock_cifar10(64) if c.data.name == "cifar10" else _nothing():
    runs = {}
    for mode in (True, False):
      # The *_seq training sequences are streamed either way; their test set is compared.
      c.data.on_device = "auto" if mode and c.data.name.endswith("_seq") else mode
      runs[mode] = fit_params(c, tmp_path / str(mode))[0]
  jax.tree.map(np.testing.assert_array_equal, runs[True], runs[False])


class _nothing:  # pylint: disable=invalid-name
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False
