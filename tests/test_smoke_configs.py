"""Trying a config for a few steps works as it is (`--config.num_train_steps=5`): the warmup is
shortened with a note instead of failing, and the run trains, checkpoints and evaluates."""

import contextlib
import importlib
import pathlib

import pytest

from dcrn_jax import train

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                      if p.stem not in ("__init__", "default"))


def _smaller_data(config, tmp_path):
  """Less data to prepare and to evaluate; the model, batch and schedule stay the config's."""
  d = config.data
  d.data_dir = str(tmp_path / "tfds")
  if d.name in ("moving_digits", "moving_fashion", "moving_digits_seq", "moving_fashion_seq"):
    d.num_train_examples, d.num_test_examples = 256, 64
  elif d.name in ("fashion_mnist", "cifar10"):
    d.eval_split = "test[:64]"
  config.progress_bar = False


# Configs whose step alone is minutes on a 2-core CPU: the test narrows their layers and keeps
# everything else (layer count, kernels, patches, schedule, sampling), which is what it checks.
_NARROWER = {
    # ~5.5 TFLOP per step with 128 features (over a minute a step here); 8 features: ~1/250.
    "forecast_mfmnist_convlstm": {"convlstm_features": (8, 8, 8, 8)},
    "forecast_mfmnist_predrnn": {"convlstm_features": (8, 8, 8, 8)},
}


def _five_steps(name, tmp_path, capsys, mock_cifar10):
  config = importlib.import_module(f"configs.{name}").get_config()
  _smaller_data(config, tmp_path)
  for key, value in _NARROWER.get(name, {}).items():
    config.model[key] = value
  config.num_train_steps = 5
  mocked = mock_cifar10(256) if config.data.name == "cifar10" else contextlib.nullcontext()
  with mocked:
    result = train.train_and_evaluate(config, str(tmp_path / "run"))
  out = capsys.readouterr().out
  assert result["num_examples"] > 0 and "done: 5 steps" in out, out
  if config.optim.schedule == "warmup_cosine" and config.optim.warmup_steps > 2:
    assert (f"note: optim.warmup_steps={config.optim.warmup_steps} is more than half of "
            "num_train_steps=5: warming up over 2 step(s) instead") in out, out
  return out


def test_the_default_config_runs_five_steps(tmp_path, capsys, mock_cifar10):
  out = _five_steps("video_gru", tmp_path, capsys, mock_cifar10)
  assert "[test] step 5/5" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONFIG_NAMES if n != "video_gru"])
def test_every_config_runs_five_steps(name, tmp_path, capsys, mock_cifar10):
  _five_steps(name, tmp_path, capsys, mock_cifar10)
