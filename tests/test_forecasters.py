"""Forecasters: shapes, patches, the architectures against the plain reference recurrence, and the
scheduled-sampling schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dcrn_jax import steps
from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model
from dcrn_jax.models.forecasters import (ConvLSTMAutoregressive, ConvLSTMForecaster,
                                         from_patches, to_patches)
from dcrn_jax.models.reference import conv, lstm_reference

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

B, T_IN, T_OUT, S = 2, 3, 2, 8


def _sequence(seed=0, channels=1):
  return jax.random.uniform(jax.random.key(seed), (B, T_IN + T_OUT, S, S, channels))


def test_patches_are_space_to_depth_and_invert():
  x = np.arange(2 * 1 * 4 * 4 * 2, dtype=np.float32).reshape(2, 1, 4, 4, 2)
  p = np.asarray(to_patches(jnp.asarray(x), 2))
  assert p.shape == (2, 1, 2, 2, 8)
  # Position (i, j) holds the 2x2 patch at rows 2i.., cols 2j.., ordered (row, col, channel).
  np.testing.assert_array_equal(p[1, 0, 1, 0], x[1, 0, 2:4, 0:2].reshape(-1))
  np.testing.assert_array_equal(np.asarray(from_patches(jnp.asarray(p), 2)), x)


@pytest.mark.parametrize("cls, predicted", [(ConvLSTMForecaster, T_OUT),
                                            (ConvLSTMAutoregressive, T_IN + T_OUT - 1)])
@pytest.mark.parametrize("patch", [1, 2])
def test_shapes(cls, predicted, patch):
  model = cls(output_frames=T_OUT, features=(4, 4), patch_size=patch)
  inputs = _sequence(channels=3)[:, :T_IN]
  variables = model.init(jax.random.key(1), inputs)
  out = model.apply(variables, inputs)
  assert out.shape == (B, predicted, S, S, 3) and out.dtype == jnp.float32


def _lstm_params(p):
  return {k: p[k] for k in ("input_kernel", "recurrent_kernel", "bias")}


def test_encoder_forecaster_is_shis_architecture_on_the_reference_recurrence():
  model = ConvLSTMForecaster(output_frames=T_OUT, features=(4, 5), patch_size=2)
  seq = _sequence(2)
  inputs = seq[:, :T_IN]
  params = model.init(jax.random.key(3), inputs)["params"]
  x = to_patches(inputs, 2)
  carries = []
  for i in range(2):
    p = params[f"encoder{i}"]
    zeros = jnp.zeros(x.shape[:1] + x.shape[2:4] + (p["bias"].shape[0] // 4,))
    carry, x = lstm_reference(_lstm_params(p), x, (zeros, zeros), mapping=conv)
    carries.append(carry)
  y = jnp.zeros((B, T_OUT) + x.shape[2:4] + (1,))
  outs = []
  for i in range(2):
    _, y = lstm_reference(_lstm_params(params[f"forecaster{i}"]), y, carries[i], mapping=conv)
    outs.append(y)
  dense = params["to_frames"]
  want = from_patches(jnp.concatenate(outs, -1) @ dense["kernel"] + dense["bias"], 2)
  got = model.apply({"params": params}, inputs, targets=seq[:, T_IN:])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _reference_next_frames(params, frames):
  """Every-next-frame predictions of the autoregressive model when it reads `frames`
  (B, K, ...) at its K steps: the stacked reference recurrence, then the 1x1 map."""
  x = frames
  for i in range(2):
    p = params[f"cell{i}"]
    zeros = jnp.zeros(x.shape[:1] + x.shape[2:4] + (p["bias"].shape[0] // 4,))
    _, x = lstm_reference(_lstm_params(p), x, (zeros, zeros), mapping=conv)
  return x @ params["to_frames"]["kernel"] + params["to_frames"]["bias"]


def test_autoregressive_model_reads_true_frames_when_forced_and_its_own_otherwise():
  model = ConvLSTMAutoregressive(output_frames=T_OUT + 1, features=(4, 4))
  seq = jax.random.uniform(jax.random.key(4), (B, T_IN + T_OUT + 1, S, S, 1))
  inputs, targets = seq[:, :T_IN], seq[:, T_IN:]
  variables = model.init(jax.random.key(5), inputs)
  params = variables["params"]["steps"]
  steps_ = T_IN + T_OUT  # every frame after the first
  forced = model.apply(variables, inputs, targets=targets, teacher_forcing=jnp.ones((B, T_OUT)))
  np.testing.assert_allclose(forced, _reference_next_frames(params, seq[:, :steps_]),
                             rtol=1e-5, atol=1e-5)
  free = model.apply(variables, inputs)  # Evaluation: its own predictions, whatever the truth.
  np.testing.assert_allclose(
      model.apply(variables, inputs, targets=targets, teacher_forcing=jnp.zeros((B, T_OUT))),
      free, rtol=1e-6, atol=1e-6)
  # Step T_IN reads the prediction of frame T_IN: rebuild the free run one frame at a time.
  fed = seq[:, :T_IN]
  for _ in range(T_OUT + 1):
    nxt = _reference_next_frames(params, fed)[:, -1:]
    fed = jnp.concatenate([fed, nxt], 1)
  np.testing.assert_allclose(free[:, T_IN - 1:], fed[:, T_IN:], rtol=1e-4, atol=1e-5)
  # Mixed: sequence 0 forced at the first future step, sequence 1 not.
  mixed = model.apply(variables, inputs, targets=targets,
                      teacher_forcing=jnp.array([[1.0, 0.0], [0.0, 0.0]]))
  np.testing.assert_allclose(mixed[1], free[1], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(mixed[0, :T_IN + 1], forced[0, :T_IN + 1], rtol=1e-5, atol=1e-6)


def test_scheduled_sampling_follows_openstls_schedule():
  p = lambda s: float(steps.sampling_probability(s, start=1.0, decay=2e-5, stop_step=50_000))
  assert p(0) == pytest.approx(1 - 2e-5)  # OpenSTL decays before the first iteration uses it.
  assert p(24_999) == pytest.approx(0.5)
  assert p(49_998) == pytest.approx(2e-5, abs=1e-6)
  assert p(49_999) == 0.0 and p(50_000) == 0.0 and p(10 ** 6) == 0.0
  fast = lambda s: float(steps.sampling_probability(s, start=0.8, decay=0.1, stop_step=100))
  assert fast(0) == pytest.approx(0.7) and fast(7) == 0.0  # Floored at 0 before stop_step.


def _model_config(**overrides):
  m = default.get_config().model
  m.name, m.convlstm_features = "convlstm_forecaster", (4,)
  for k, v in overrides.items():
    m[k] = v
  return m


def test_create_model_builds_forecasters_and_refuses_bad_patches():
  model = create_model(_model_config(patch_size=4), num_classes=0, input_shape=(3, 16, 16, 1),
                       output_frames=5)
  assert isinstance(model, ConvLSTMForecaster) and model.output_frames == 5
  assert model.features == (4,) and model.patch_size == 4
  for bad in (0, 3):
    with pytest.raises(UserError, match="patch_size"):
      create_model(_model_config(patch_size=bad), num_classes=0, input_shape=(3, 16, 16, 1),
                   output_frames=5)
