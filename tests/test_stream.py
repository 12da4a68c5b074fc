"""Streaming (dcrn_jax/models/streaming.py, dcrn_jax/stream.py): the per-frame step equals the
whole-clip model after every frame; the window policies do what their definitions say."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model
from dcrn_jax.models import streaming

T, H, C = 5, 16, 3


def _model_config(name, **over):
  from configs import default  # pylint: disable=g-import-not-at-top
  m = default.get_config().model
  m.unlock()
  m.name = name
  m.conv_features, m.embed_dim, m.hidden_size, m.num_layers = (4, 8), 16, 8, 2
  m.convlstm_features, m.patch_size = (4, 4), 1
  for k, v in over.items():
    m[k] = v
  return m


def _build(name, **over):
  model = create_model(_model_config(name, **over), num_classes=4, input_shape=(T, H, H, C),
                       output_frames=2)
  clips = jax.random.uniform(jax.random.PRNGKey(1), (2, T, H, H, C))
  variables = model.init(jax.random.PRNGKey(0), clips)
  return model, variables, clips


RECURRENT = [("cnn_gru", {}), ("cnn_lstm", {}), ("convlstm", {}),
             ("convlstm", {"batch_norm": True}), ("convlstm_autoregressive", {}),
             ("convlstm_autoregressive", {"patch_size": 2})]


@pytest.mark.parametrize("name,over", RECURRENT)
def test_step_equals_whole_clip_after_every_frame(name, over):
  model, variables, clips = _build(name, **over)
  step = jax.jit(streaming.make_step(model))
  carry = streaming.initial_carry(model, variables, 2, clips.shape[2:])
  with jax.default_matmul_precision("highest"):
    for t in range(1, T + 1):
      carry, out = step(variables, carry, clips[:, t - 1])
      whole = model.apply(variables, clips[:, :t])
      if name == "convlstm_autoregressive":
        whole = whole[:, t - 1]  # The prediction of frame t + 1 (the first t steps read truth).
      np.testing.assert_allclose(out, whole, atol=1e-5, rtol=0, err_msg=f"frame {t}")


@pytest.mark.parametrize("name", ["cnn", "row_lstm", "convlstm_forecaster"])
def test_models_without_a_time_recurrence_are_refused(name):
  shape = (H, H, C) if name in ("cnn", "row_lstm") else (T, H, H, C)
  model = create_model(_model_config(name), num_classes=4, input_shape=shape, output_frames=2)
  with pytest.raises(UserError, match="cannot run one frame at a time") as e:
    streaming.make_step(model)
  assert "\n" not in str(e.value)
