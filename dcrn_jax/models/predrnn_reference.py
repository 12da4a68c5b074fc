"""The PredRNN family's stack as plain steps in a `lax.scan`, differentiated by autodiff: the
specification of `predrnn_scan.predrnn_sequence` (same signature, same results), and the model's
implementation before that one. It is slow to train on XLA:CPU (autodiff of the convolutions
inside the loop) and is not used by the models; tests/test_predrnn_scan.py holds the fast stack to
it, outputs and every gradient.

The cells are predrnn.py's `st_lstm`, `causal_lstm` and `ghu` (its module docstring has the
equations). Step t reads u_t frames_t + (1 - u_t) prediction_{t-1}, written as the bottom layer's
input side of the true frame (one convolution of all frames before the loop) mixed with that of
the prediction (convolved in the loop).
"""

import jax
import jax.numpy as jnp

from dcrn_jax.models.conv import conv2d
from dcrn_jax.models.predrnn import causal_lstm, ghu, st_lstm

_F32 = jnp.float32


def predrnn_reference(spec, weights, frames, use_true):
  """predrnn_scan.predrnn_sequence's math: frames (T, B, H, W, P), use_true (T, B) ->
  (predictions (T, B, H, W, P), deltas: None or (i . g, i' . g') each (T, L, B, H, W, F))."""
  dt, cells, highway, head = spec.dtype, weights["cells"], weights["ghu"], weights["head"]
  step = {"st_lstm": st_lstm, "causal_lstm": causal_lstm}[spec.cell]
  t, b = frames.shape[:2]
  gx_true = conv2d(frames.reshape((-1,) + frames.shape[2:]).astype(dt),
                   cells[0]["input_kernel"].astype(dt)).astype(_F32)
  gx_true = gx_true.reshape((t, b) + gx_true.shape[1:]) + cells[0]["bias"]

  def body(carry, xs):
    states, m, z, previous = carry
    gx_frame, u = xs
    u = u[:, None, None, None]
    gx_own = conv2d(previous.astype(dt), cells[0]["input_kernel"].astype(dt))
    gx = u * gx_frame + (1 - u) * (gx_own.astype(_F32) + cells[0]["bias"])
    new_states, deltas = [], []
    for i, (p, (c, h)) in enumerate(zip(cells, states)):
      if i > 0:
        x = z if (i == 1 and highway is not None) else new_states[-1][1]
        gx = conv2d(x.astype(dt), p["input_kernel"].astype(dt)).astype(_F32) + p["bias"]
      if spec.deltas:
        c, h, m, delta = step(p, gx, c, h, m, dt, deltas=True)
        deltas.append(delta)
      else:
        c, h, m = step(p, gx, c, h, m, dt)
      new_states.append((c, h))
      if i == 0 and highway is not None:
        z = ghu(highway, h, z, dt)
    top = new_states[-1][1]
    prediction = (top.astype(dt) @ head["kernel"].astype(dt)).astype(_F32) + head["bias"]
    out = (prediction, tuple(jnp.stack([d[k] for d in deltas]) for k in range(2))
           if spec.deltas else None)
    return (tuple(new_states), m, z, prediction), out

  feats = cells[0]["hidden_kernel"].shape[2]
  zeros = jnp.zeros((b,) + frames.shape[2:4] + (feats,), _F32)
  carry = (tuple((zeros, zeros) for _ in cells), zeros, zeros, jnp.zeros(frames.shape[1:], _F32))
  _, (predictions, deltas) = jax.lax.scan(body, carry, (gx_true, use_true))
  return predictions, deltas
