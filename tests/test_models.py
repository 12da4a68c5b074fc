"""Model output shapes, parameter counts, dtypes, dropout/batch-norm behaviour, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dcrn_jax import UserError
from dcrn_jax.models import (CNNClassifier, ConvLSTMClassifier, FrameRNNClassifier,
                             RowLSTMClassifier, create_model)
from dcrn_jax.state import init_variables

CLIP = (3, 16, 16, 1)  # (T, H, W, C)
IMAGE = (16, 16, 3)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _model_config(name, **overrides):
  m = default.get_config().model
  m.name = name
  m.conv_features = (4, 8)
  m.embed_dim = 6
  m.hidden_size = 5
  m.convlstm_features = (4, 3)
  for k, v in overrides.items():
    m[k] = v
  return m


@pytest.mark.parametrize("name,shape", [("cnn", IMAGE), ("row_lstm", IMAGE), ("cnn_gru", CLIP),
                                        ("cnn_lstm", CLIP), ("convlstm", CLIP)])
def test_every_model_gives_logits_of_batch_by_classes(name, shape):
  model = create_model(_model_config(name), num_classes=7, input_shape=shape)
  variables = init_variables(model, shape, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (2,) + shape)
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_cnn_gru_parameter_count_matches_hand_count():
  model = FrameRNNClassifier(num_classes=3, cell="gru", conv_features=(4, 8), embed_dim=6,
                             hidden_size=5)
  params = init_variables(model, (2, 8, 8, 1), jax.random.key(0))["params"]
  conv = (3 * 3 * 1 * 4 + 4) + (3 * 3 * 4 * 8 + 8)
  embed = (2 * 2 * 8) * 6 + 6  # two 2x2 pools: 8x8 -> 2x2 maps of 8 channels, flattened
  # Gates r, z, n fused: input kernel and bias, recurrent kernel, recurrent bias of n only.
  gru = (6 * 3 * 5 + 3 * 5) + (5 * 3 * 5) + 5
  head = 5 * 3 + 3
  assert _count(params) == conv + embed + gru + head


def test_cnn_lstm_parameter_count_matches_hand_count():
  model = FrameRNNClassifier(num_classes=3, cell="lstm", conv_features=(4,), embed_dim=6,
                             hidden_size=5, stem_stride=2)
  params = init_variables(model, (2, 8, 8, 1), jax.random.key(0))["params"]
  stem = 2 * 2 * 1 * 4 + 4  # 8x8 -> 4x4 with 4 channels; the stem takes the only feature size,
  embed = (4 * 4 * 4) * 6 + 6  # so no conv block (and no pool) follows: the map stays 4x4x4
  lstm = (6 * 4 * 5 + 4 * 5) + (5 * 4 * 5)  # 4 fused gates: input kernel + bias, recurrent kernel
  head = 5 * 3 + 3
  assert _count(params) == stem + embed + lstm + head


def test_convlstm_and_row_lstm_parameter_counts():
  conv = ConvLSTMClassifier(num_classes=2, convlstm_features=(4, 3), kernel_size=3, stem_stride=2)
  params = init_variables(conv, (2, 8, 8, 1), jax.random.key(0))["params"]
  stem = 3 * 3 * 1 * 4 + 4
  # Each ConvLSTM layer: input conv and hidden conv to 4*features gates, one bias.
  layer0 = (3 * 3 * 4 * 16) + (3 * 3 * 4 * 16) + 16
  layer1 = (3 * 3 * 4 * 12) + (3 * 3 * 3 * 12) + 12
  assert _count(params) == stem + layer0 + layer1 + (3 * 2 + 2)
  row = RowLSTMClassifier(num_classes=2, hidden_size=5)
  params = init_variables(row, (4, 6, 2), jax.random.key(0))["params"]
  assert _count(params) == (12 * 4 * 5 + 4 * 5) + (5 * 4 * 5) + (5 * 2 + 2)


def test_recurrent_models_use_scan_so_params_do_not_depend_on_length():
  m = _model_config("cnn_gru")
  counts = []
  for t in (2, 9):
    model = create_model(m, num_classes=4, input_shape=(t, 16, 16, 1))
    counts.append(_count(init_variables(model, (t, 16, 16, 1), jax.random.key(0))))
  assert counts[0] == counts[1]


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = create_model(_model_config("cnn_gru", dtype="bfloat16"), num_classes=4,
                       input_shape=CLIP)
  variables = init_variables(model, CLIP, jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))
  assert model.apply(variables, jnp.ones((2,) + CLIP), train=False).dtype == jnp.float32


def test_dropout_is_random_in_training_and_off_in_eval():
  model = CNNClassifier(num_classes=3, conv_features=(4,), embed_dim=8, dropout=0.5)
  variables = init_variables(model, IMAGE, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (4,) + IMAGE)
  a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))


def test_batch_norm_statistics_live_in_their_own_collection_and_update_in_training():
  model = CNNClassifier(num_classes=3, conv_features=(4,), embed_dim=8, batch_norm=True)
  variables = init_variables(model, IMAGE, jax.random.key(0))
  assert _count(variables["batch_stats"]) == 2 * 4  # mean and var of 4 channels
  x = jax.random.uniform(jax.random.key(1), (4,) + IMAGE)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = jax.tree.leaves(variables["batch_stats"])
  after = jax.tree.leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_create_model_rejects_wrong_names_and_input_ranks():
  with pytest.raises(UserError, match="unknown model.name='cnn_gur'.*cnn_gru"):
    create_model(_model_config("cnn_gur"), num_classes=3, input_shape=CLIP)
  with pytest.raises(UserError, match="takes clips"):
    create_model(_model_config("cnn_gru"), num_classes=3, input_shape=IMAGE)
  with pytest.raises(UserError, match="takes images"):
    create_model(_model_config("cnn"), num_classes=3, input_shape=CLIP)
  with pytest.raises(UserError, match="dropout"):
    create_model(_model_config("cnn", dropout=1.5), num_classes=3, input_shape=IMAGE)
