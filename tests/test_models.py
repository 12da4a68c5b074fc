"""Model output shapes, parameter counts, parameter names, dtypes, dropout/batch-norm behaviour,
keyword-only construction, config errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dcrn_jax import UserError
from dcrn_jax.models import (GRU, CNNClassifier, ConvLSTMClassifier, FrameEncoder,
                             FrameRNNClassifier, ImageEncoder, RowLSTMClassifier, create_model)
from dcrn_jax.models.classifiers import Head
from dcrn_jax.state import init_variables

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

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


# Parameter and batch-statistics paths of each model with two recurrent layers, batch norm and a
# stem: checkpoints written by earlier versions restore only while these stay the same.
_ENCODER_PATHS = ["blocks/bn0_0/bias", "blocks/bn0_0/scale", "blocks/conv0_0/kernel", "embed/bias",
                  "embed/kernel", "stem/bias", "stem/kernel"]
_STATS = ["blocks/bn0_0/mean", "blocks/bn0_0/var"]
_HEAD_PATHS = ["params/head/logits/bias", "params/head/logits/kernel"]
_LSTM = ["bias", "input_kernel", "recurrent_kernel"]
PATHS = {
    "cnn": [f"batch_stats/encoder/{p}" for p in _STATS]
           + [f"params/encoder/{p}" for p in _ENCODER_PATHS] + _HEAD_PATHS,
    "row_lstm": _HEAD_PATHS + [f"params/lstm{i}/{p}" for i in (0, 1) for p in _LSTM],
    "cnn_gru": [f"batch_stats/encoder/cnn/{p}" for p in _STATS]
               + [f"params/encoder/cnn/{p}" for p in _ENCODER_PATHS]
               + [f"params/gru{i}/{p}" for i in (0, 1)
                  for p in ("bias", "input_kernel", "recurrent_bias", "recurrent_kernel")]
               + _HEAD_PATHS,
    "cnn_lstm": [f"batch_stats/encoder/cnn/{p}" for p in _STATS]
                + [f"params/encoder/cnn/{p}" for p in _ENCODER_PATHS] + _HEAD_PATHS
                + [f"params/lstm{i}/{p}" for i in (0, 1) for p in _LSTM],
    "convlstm": ["batch_stats/stem_bn/mean", "batch_stats/stem_bn/var"]
                + [f"params/convlstm{i}/{p}" for i in (0, 1) for p in _LSTM] + _HEAD_PATHS
                + ["params/stem/kernel", "params/stem_bn/bias", "params/stem_bn/scale"],
}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_parameter_names_stay_those_of_earlier_checkpoints(name):
  shape = CLIP if name in ("cnn_gru", "cnn_lstm", "convlstm") else IMAGE
  m = _model_config(name, num_layers=2, batch_norm=True, stem_stride=2)
  model = create_model(m, num_classes=7, input_shape=shape)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1,) + shape))
  paths = ["/".join(str(k.key) for k in path)
           for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
  assert paths == PATHS[name]


class _HandStackedGRUClassifier(nn.Module):
  """FrameRNNClassifier as it was before it used Stack: dropout and a GRU per layer, in a loop."""

  @nn.compact
  def __call__(self, clips, *, train):
    cnn = ImageEncoder(features=(4, 8), embed_dim=6, parent=None)
    x = FrameEncoder(cnn=cnn, name="encoder")(clips, train=train)
    for i in range(2):
      x = nn.Dropout(0.5, deterministic=not train)(x)
      x = GRU(5, name=f"gru{i}")(x)
    return Head(num_classes=3, dropout=0.5, name="head")(x[:, -1], train=train)


def test_stacked_classifier_keeps_the_parameters_and_dropout_of_the_hand_stacked_one():
  # Same parameter paths and initial values, and the same dropout masks (Flax derives dropout
  # keys from module paths): a training step gives bitwise the same logits.
  model = FrameRNNClassifier(num_classes=3, conv_features=(4, 8), embed_dim=6, hidden_size=5,
                             num_layers=2, dropout=0.5)
  x = jax.random.uniform(jax.random.key(1), (2,) + CLIP)
  variables = model.init(jax.random.key(0), x)
  old_variables = _HandStackedGRUClassifier().init(jax.random.key(0), x, train=False)
  jax.tree.map(np.testing.assert_array_equal, variables, old_variables)
  rngs = {"dropout": jax.random.key(4)}
  np.testing.assert_array_equal(
      model.apply(variables, x, train=True, rngs=rngs),
      _HandStackedGRUClassifier().apply(variables, x, train=True, rngs=rngs))


def test_encoders_and_classifiers_are_built_by_keyword():
  encoder = ImageEncoder(features=(4,), embed_dim=6)
  assert FrameEncoder(cnn=encoder).cnn is encoder
  for build in (lambda: ImageEncoder((4,)), lambda: FrameEncoder(encoder),
                lambda: CNNClassifier(3), lambda: FrameRNNClassifier(3, "gru"),
                lambda: ConvLSTMClassifier(3), lambda: RowLSTMClassifier(3)):
    with pytest.raises(TypeError, match="positional"):
      build()


def test_create_model_passes_config_fields_as_keywords():
  model = create_model(_model_config("convlstm", convlstm_kernel=5, dropout=0.25,
                                     dtype="bfloat16"), num_classes=4, input_shape=CLIP)
  assert isinstance(model, ConvLSTMClassifier)
  assert (model.kernel_size, model.convlstm_features, model.dropout, model.dtype) == (
      5, (4, 3), 0.25, jnp.bfloat16)
  model = create_model(_model_config("cnn_lstm", num_layers=2), num_classes=4, input_shape=CLIP)
  assert (model.cell, model.num_layers, model.conv_features) == ("lstm", 2, (4, 8))
