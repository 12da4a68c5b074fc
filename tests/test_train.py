"""The real train loop on a tiny moving_digits config: learning, resume, eval, and sharding."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import video_gru
from dcrn_jax import UserError, checkpoint, data, train

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **overrides):
  c = video_gru.get_config()
  c.data.data_dir = data_dir
  c.data.num_frames, c.data.image_size = 4, 32
  c.data.num_train_examples, c.data.num_test_examples = 512, 96
  c.model.stem_stride, c.model.conv_features = 2, (8, 16)
  c.model.embed_dim, c.model.hidden_size = 32, 32
  c.batch_size, c.eval_batch_size = 16, 32
  c.num_train_steps, c.log_every_steps = 40, 10
  c.eval_every_steps, c.checkpoint_every_steps = 20, 10
  c.optim.learning_rate, c.optim.warmup_steps = 1e-2, 5
  c.progress_bar = False
  for k, v in overrides.items():
    c[k] = v
  return c


def read_metrics(workdir):
  lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
  return [json.loads(x) for x in lines]


def final_params(workdir, config):
  """The parameters of the latest checkpoint, as numpy arrays."""
  mesh, info, _, model = train._setup(config)  # pylint: disable=protected-access
  del mesh
  from dcrn_jax.state import init_variables  # pylint: disable=g-import-not-at-top
  abstract = jax.eval_shape(lambda: init_variables(model, info.input_shape, jax.random.key(0)))
  step, variables = checkpoint.Checkpointer(workdir, read_only=True).restore_variables(
      None, abstract)
  return step, jax.tree.map(np.asarray, variables["params"])


def test_loss_goes_down_and_accuracy_beats_chance(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=120, log_every_steps=20, eval_every_steps=0)
  result = train.train_and_evaluate(config, str(tmp_path))
  losses = [r["loss"] for r in read_metrics(tmp_path) if r["split"] == "train"]
  assert losses[-1] < 0.8 * losses[0], losses
  assert result["num_examples"] == 96
  assert result["accuracy"] > 0.3, result  # chance: 1/8


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_interrupted_run_resumes_to_the_same_parameters_and_eval_restores(
    data_dir, tmp_path, monkeypatch):
  config = tiny_config(data_dir)
  config.data.on_device = False  # Streamed: the batches below are the loop's.
  full = tmp_path / "full"
  train.train_and_evaluate(config, str(full))

  real_batches = data.train_batches

  def interrupted(*args, **kwargs):  # Ctrl-C while the loop is between steps 20 and 30.
    for i, batch in enumerate(real_batches(*args, **kwargs)):
      if i == 25:
        raise KeyboardInterrupt
      yield batch

  resumed = tmp_path / "resumed"
  monkeypatch.setattr(data, "train_batches", interrupted)
  with pytest.raises(UserError, match="aborted at step .* latest checkpoint, step 20"):
    train.train_and_evaluate(config, str(resumed))
  monkeypatch.setattr(data, "train_batches", real_batches)
  assert checkpoint.Checkpointer(str(resumed)).latest_step() == 20
  train.train_and_evaluate(config, str(resumed))

  steps_logged = [(r["step"], r["split"]) for r in read_metrics(resumed)]
  assert (30, "train") in steps_logged and steps_logged.count((10, "train")) == 1
  step_a, params_a = final_params(str(full), config)
  step_b, params_b = final_params(str(resumed), config)
  assert step_a == step_b == 40
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               params_a, params_b)

  results = train.evaluate(config, str(resumed))
  saved = json.loads((resumed / "eval.json").read_text())
  assert saved["step"] == 40 and saved["accuracy"] == results["accuracy"]
  last_test = [r for r in read_metrics(full) if r["split"] == "test"][-1]
  np.testing.assert_allclose(saved["accuracy"], last_test["accuracy"])


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_eval_restores_a_chosen_step_and_names_missing_ones(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=20, eval_every_steps=0)
  train.train_and_evaluate(config, str(tmp_path))
  config.eval_checkpoint_step = 10
  assert train.evaluate(config, str(tmp_path))["step"] == 10
  config.eval_checkpoint_step = 15
  with pytest.raises(UserError, match=r"no checkpoint for step 15 .* \[10, 20\]"):
    train.evaluate(config, str(tmp_path))


_SHARDING_SCRIPT = """
import sys, jax, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_train import tiny_config, final_params
from dcrn_jax import train

config = tiny_config({data_dir!r}, num_train_steps=8, eval_every_steps=0, checkpoint_every_steps=0)
result = train.train_and_evaluate(config, {workdir!r})
_, params = final_params({workdir!r}, config)
flat = {{jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}}
np.savez({out!r}, devices=len(jax.devices()), loss=result["loss"], **flat)
"""


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_four_devices_match_one_device(data_dir, tmp_path):
  data.get_info(tiny_config(data_dir).data)  # Prepared once here, not by both children.
  outs = {}
  for n in (1, 4):
    out = str(tmp_path / f"params{n}.npz")
    code = _SHARDING_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), data_dir=data_dir,
                                   workdir=str(tmp_path / f"run{n}"), out=out)
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    outs[n] = dict(np.load(out))
  assert outs[1].pop("devices") == 1 and outs[4].pop("devices") == 4
  assert outs[1].keys() == outs[4].keys()
  for k in outs[1]:
    np.testing.assert_allclose(outs[1][k], outs[4][k], rtol=2e-4, atol=2e-5, err_msg=k)


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_cifar10_cnn_config_trains_and_evaluates_on_mocked_tfds(tmp_path, mock_cifar10):
  from configs import cifar10_cnn  # pylint: disable=g-import-not-at-top
  config = cifar10_cnn.get_config()
  config.data.data_dir = str(tmp_path / "tfds")
  config.batch_size, config.eval_batch_size = 8, 8
  config.num_train_steps, config.log_every_steps, config.optim.warmup_steps = 3, 1, 1
  config.progress_bar = False
  # mock_data swaps the file system while a dataset is opened; a background checkpoint write at
  # that moment would land in the mock, so this test writes checkpoints in the foreground.
  config.async_checkpointing = False
  with mock_cifar10(20):
    result = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert train.evaluate(config, str(tmp_path / "run"))["step"] == 3
  assert result["num_examples"] == 20 and 0.0 <= result["accuracy"] <= 1.0
  assert np.isfinite(result["loss"])
  assert [r["step"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"] == [1, 2, 3]
