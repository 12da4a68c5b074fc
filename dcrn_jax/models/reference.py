"""The recurrences in their plain form: the specification of the fast layers in `recurrent.py`.

Each is one step in a `lax.scan`, written like Flax's `LSTMCell`, and differentiated by autodiff.
They are slow to train on XLA:CPU (autodiff of a convolution inside a loop) and are not used by
the models; tests/test_recurrent.py checks that the fast layers (rnn_scan.py) give the same
outputs, final carries and gradients. `W x` below is `mapping(x, W)`: a matmul for dense layers
(`dense`), a stride-1 'SAME' convolution for convolutional ones (`conv`).

LSTM (gates i, f, g, o fused on the last axis of the kernels and the bias):

    i = sigmoid(W_ii x + W_hi h + b_i)        f = sigmoid(W_if x + W_hf h + b_f)
    g = tanh(W_ig x + W_hg h + b_g)           o = sigmoid(W_io x + W_ho h + b_o)
    c' = f * c + i * g                        h' = o * tanh(c')

GRU (gates r, z, n, as PyTorch's nn.GRU; b_hn sits inside r * (...)):

    r = sigmoid(W_ir x + W_hr h + b_r)        z = sigmoid(W_iz x + W_hz h + b_z)
    n = tanh(W_in x + b_n + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

`params` are the layers' own: `input_kernel` (C, G*F) or (kh, kw, C, G*F), `recurrent_kernel`,
`bias` (G*F,), and for GRUs `recurrent_bias` (F,) = b_hn. Sequences are batch-major,
x (B, T, ..., C) -> ys (B, T, ..., F); `reverse` runs from the last step to the first and keeps
outputs aligned with their inputs, as the layers do.
"""

import jax
import jax.numpy as jnp
from jax import lax


def dense(x, w):
  return x @ w


def conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _over_time(step, carry, x, reverse):
  carry, ys = lax.scan(step, carry, jnp.swapaxes(x, 0, 1), reverse=reverse)
  return carry, jnp.swapaxes(ys, 0, 1)


def lstm_reference(params, x, carry, *, mapping=dense, reverse=False):
  """x (B, T, ..., C), carry (c, h) each (B, ..., F) -> ((c, h), ys (B, T, ..., F))."""

  def step(carry, x_t):
    c, h = carry
    gates = (mapping(x_t, params["input_kernel"]) + mapping(h, params["recurrent_kernel"])
             + params["bias"])
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  return _over_time(step, tuple(carry), x, reverse)


def gru_reference(params, x, h, *, mapping=dense, reverse=False):
  """x (B, T, ..., C), h (B, ..., F) -> (h, ys (B, T, ..., F))."""

  def step(h, x_t):
    xr, xz, xn = jnp.split(mapping(x_t, params["input_kernel"]) + params["bias"], 3, axis=-1)
    hr, hz, hn = jnp.split(mapping(h, params["recurrent_kernel"]), 3, axis=-1)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + params["recurrent_bias"]))
    h = (1 - z) * n + z * h
    return h, h

  return _over_time(step, h, x, reverse)
