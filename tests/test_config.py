"""Every config file loads, is locked, and refuses unknown keys and wrong types."""

import importlib
import pathlib

import pytest

from configs import default
from dcrn_jax import UserError, train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("__init__",))


def test_the_configs_the_readme_names_exist():
  for name in ("default", "video_gru", "video_lstm", "convlstm", "cifar10_cnn"):
    assert name in CONFIG_NAMES


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_config_has_the_required_fields_and_valid_values(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  for key in ("seed", "batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
              "checkpoint_every_steps", "model", "data", "optim"):
    assert key in config
  train.validate_config(config)  # Raises on a bad value.
  with pytest.raises(AttributeError, match="cannot be added since the config is locked"):
    config.batch_sizee = 3


def test_misspelled_keys_are_refused_with_the_valid_names():
  config = default.get_config()
  with pytest.raises(AttributeError, match='Did you mean "hidden_size"'):
    config.model.hiden_size = 3
  with pytest.raises(AttributeError, match="learning_rate"):
    config.optim.lr = 0.1


def test_wrong_types_are_refused():
  config = default.get_config()
  with pytest.raises(TypeError, match="batch_size"):
    config.batch_size = "large"
  with pytest.raises(TypeError):
    config.num_train_steps = 2.5
  config.optim.learning_rate = 1  # An int where a float is expected is fine.
  assert config.optim.learning_rate == 1.0


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 0, "batch_size=0 must be positive"),
    ("num_train_steps", -5, "num_train_steps=-5 must be positive"),
    ("eval_every_steps", -1, "eval_every_steps=-1 must be >= 0"),
    ("label_smoothing", 1.0, "label_smoothing"),
])
def test_bad_values_are_user_errors(field, value, match):
  config = default.get_config()
  config[field] = value
  with pytest.raises(UserError, match=match):
    train.validate_config(config)
