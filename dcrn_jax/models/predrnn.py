"""The PredRNN family: stacked spatiotemporal cells with a zigzag memory, stepped over frames.

  PredRNN    (`predrnn`) Wang et al., NeurIPS 2017: spatiotemporal LSTM (ST-LSTM) cells. Each
             layer l keeps its temporal memory C^l and hidden state H^l; one spatiotemporal
             memory M flows up the stack within a step and from the top layer at t-1 to the
             bottom layer at t (the zigzag). With * a 'SAME' k x k convolution, s the sigmoid:

                 i  = s(W_xi*X + W_hi*H + b_i)     i' = s(W'_xi*X + W_mi*M + b'_i)
                 f  = s(W_xf*X + W_hf*H + b_f)     f' = s(W'_xf*X + W_mf*M + b'_f)
                 g  = tanh(W_xg*X + W_hg*H + b_g)  g' = tanh(W'_xg*X + W_mg*M + b'_g)
                 C_t = f . C_{t-1} + i . g         M_t = f' . M + i' . g'
                 o  = s(W_xo*X + W_ho*H + W_co*C_t + W_mo*M_t + b_o)
                 H_t = o . tanh(W_11 * [C_t, M_t])            (W_11: a 1 x 1 convolution)

             where M on the right is M^{l-1}_t (M^{top}_{t-1} for l = 0), H = H^l_{t-1}, and X
             is the frame (l = 0) or H^{l-1}_t.
  PredRNN++  (`predrnn_pp`) Wang et al., ICML 2018: causal LSTM cells (memories in cascade) and
             a gradient highway unit (GHU) between the first and second layer:

                 (g, i, f)    = (tanh, s, s)(W_1 * [X, H_{t-1}, C_{t-1}])
                 C_t          = f . C_{t-1} + i . g
                 (g', i', f') = (tanh, s, s)(W_2 * [X, C_t, M])
                 M_t          = f' . tanh(W_3 * M) + i' . g'
                 o            = tanh(W_4 * [X, C_t, M_t])
                 H_t          = o . tanh(W_5 * [C_t, M_t])                (W_5: 1 x 1)

                 GHU:  P = tanh(W_px*X + W_pz*Z_{t-1}),  S = s(W_sx*X + W_sz*Z_{t-1}),
                       Z_t = S . P + (1 - S) . Z_{t-1}

             with biases on every convolution of the gates (the paper leaves them implicit).

Both predict every next frame as `ConvLSTMAutoregressive` does (forecasters.py): inputs (B, Tin,
H, W, C) -> (B, Tin + Tout - 1, H, W, C), a 1 x 1 map of the top hidden state; after the input
frames, step t reads the true frame where `teacher_forcing[:, t - Tin]` is 1 and its own last
prediction otherwise. `patch_size` works as in forecasters.py. Every layer has the same number
of features (M passes between layers).

The model runs the stack with `predrnn_scan.predrnn_sequence`: one loop over time with a
hand-written backward pass (fast on XLA:CPU, where autodiff of convolutions inside a loop is
slow). `st_lstm`, `causal_lstm` and `ghu` below are the cells' single steps in plain JAX: the
specification (`predrnn_reference.py` steps them with autodiff; the tests compare).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dcrn_jax.models import predrnn_scan
from dcrn_jax.models.conv import conv2d
from dcrn_jax.models.forecasters import _check, from_patches, to_patches

_INIT = nn.initializers.lecun_normal()


def _bias(gates: int, forget: Sequence[int]):
  """Zeros with 1.0 on the forget gates' blocks (gate indices `forget` of `gates`)."""

  def init(key, shape, dtype=jnp.float32):
    del key
    f = shape[-1] // gates
    b = jnp.zeros(shape, dtype)
    for g in forget:
      b = b.at[g * f:(g + 1) * f].set(1.0)
    return b

  return init


class STLSTMParams(nn.Module):
  """Parameters of one ST-LSTM cell reading `in_channels` channels, as a dict: input_kernel
  (k, k, C, 7F) for gates [i, f, g, i', f', g', o], bias (7F,), hidden_kernel (k, k, F, 4F) for
  [i, f, g, o], memory_kernel (k, k, F, 3F) for [i', f', g'], output_kernel (k, k, 2F, F)
  (W_co, W_mo over [C, M]) and fuse_kernel (1, 1, 2F, F) (W_11)."""

  features: int
  kernel_size: int
  in_channels: int

  @nn.compact
  def __call__(self):
    k, f = (self.kernel_size, self.kernel_size), self.features
    return {"input_kernel": self.param("input_kernel", _INIT, k + (self.in_channels, 7 * f)),
            "bias": self.param("bias", _bias(7, (1, 4)), (7 * f,)),
            "hidden_kernel": self.param("hidden_kernel", _INIT, k + (f, 4 * f)),
            "memory_kernel": self.param("memory_kernel", _INIT, k + (f, 3 * f)),
            "output_kernel": self.param("output_kernel", _INIT, k + (2 * f, f)),
            "fuse_kernel": self.param("fuse_kernel", _INIT, (1, 1, 2 * f, f))}


def st_lstm(p, gx, c, h, m, dtype=jnp.float32, deltas=False):
  """One ST-LSTM step (the module docstring's equations). gx = W_x*X + b (B, H, W, 7F), the
  input side already convolved; c, h, m (B, H, W, F) -> (c', h', m'), and with `deltas` also
  the memories' increments (i . g, i' . g') that PredRNN-V2's decoupling loss reads."""
  gh = conv2d(h.astype(dtype), p["hidden_kernel"].astype(dtype)).astype(jnp.float32)
  gm = conv2d(m.astype(dtype), p["memory_kernel"].astype(dtype)).astype(jnp.float32)
  xi, xf, xg, xi2, xf2, xg2, xo = jnp.split(gx.astype(jnp.float32), 7, axis=-1)
  hi, hf, hg, ho = jnp.split(gh, 4, axis=-1)
  mi, mf, mg = jnp.split(gm, 3, axis=-1)
  dc = nn.sigmoid(xi + hi) * jnp.tanh(xg + hg)
  dm = nn.sigmoid(xi2 + mi) * jnp.tanh(xg2 + mg)
  c = nn.sigmoid(xf + hf) * c + dc
  m = nn.sigmoid(xf2 + mf) * m + dm
  cm = jnp.concatenate([c, m], -1).astype(dtype)
  o = nn.sigmoid(xo + ho + conv2d(cm, p["output_kernel"].astype(dtype)).astype(jnp.float32))
  h = o * jnp.tanh((cm @ p["fuse_kernel"][0, 0].astype(dtype)).astype(jnp.float32))
  return (c, h, m, (dc, dm)) if deltas else (c, h, m)


def decoupling(adapter, dc, dm):
  """PredRNN-V2's memory decoupling term of one cell and step: the mean over batch and channels
  of |cos(W_d * dc, W_d * dm)|, the cosine taken over the spatial positions of each channel
  (W_d: the shared 1 x 1 `adapter`, (F, F)). (B, H, W, F) each -> scalar."""
  a, b = dc @ adapter, dm @ adapter
  a = a.reshape(a.shape[0], -1, a.shape[-1])
  b = b.reshape(b.shape[0], -1, b.shape[-1])
  a = a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  b = b / jnp.maximum(jnp.linalg.norm(b, axis=1, keepdims=True), 1e-12)
  cos = jnp.sum(a * b, 1) / jnp.maximum(
      jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1), 1e-8)
  return jnp.mean(jnp.abs(cos))


class CausalLSTMParams(nn.Module):
  """Parameters of one causal LSTM cell: input_kernel (k, k, C, 7F) for [g, i, f, g', i', f',
  o], bias (7F,), hidden_kernel (k, k, F, 3F) and cell_kernel (k, k, F, 3F) for [g, i, f],
  memory_kernel (k, k, F, 3F) for [g', i', f'], cell_memory_kernel (k, k, F, 3F) (C_t into
  [g', i', f']), memory_in_kernel (k, k, F, F) (W_3), output_kernel (k, k, 2F, F) (C_t, M_t
  into o) and fuse_kernel (1, 1, 2F, F) (W_5). W_1, W_2, W_4 of the paper are these blocks."""

  features: int
  kernel_size: int
  in_channels: int

  @nn.compact
  def __call__(self):
    k, f = (self.kernel_size, self.kernel_size), self.features
    shapes = {"hidden_kernel": k + (f, 3 * f), "cell_kernel": k + (f, 3 * f),
              "memory_kernel": k + (f, 3 * f), "cell_memory_kernel": k + (f, 3 * f),
              "memory_in_kernel": k + (f, f), "output_kernel": k + (2 * f, f),
              "fuse_kernel": (1, 1, 2 * f, f)}
    out = {"input_kernel": self.param("input_kernel", _INIT, k + (self.in_channels, 7 * f)),
           "bias": self.param("bias", _bias(7, (2, 5)), (7 * f,))}
    out.update({name: self.param(name, _INIT, shape) for name, shape in shapes.items()})
    return out


def causal_lstm(p, gx, c, h, m, dtype=jnp.float32):
  """One causal LSTM step (the module docstring's equations). gx = W_x*X + b (B, H, W, 7F);
  c, h, m (B, H, W, F) -> (c', h', m')."""

  def cv(x, name):
    return conv2d(x.astype(dtype), p[name].astype(dtype)).astype(jnp.float32)

  xg, xi, xf, xg2, xi2, xf2, xo = jnp.split(gx.astype(jnp.float32), 7, axis=-1)
  hg, hi, hf = jnp.split(cv(h, "hidden_kernel") + cv(c, "cell_kernel"), 3, axis=-1)
  c = nn.sigmoid(xf + hf) * c + nn.sigmoid(xi + hi) * jnp.tanh(xg + hg)
  mg, mi, mf = jnp.split(cv(m, "memory_kernel") + cv(c, "cell_memory_kernel"), 3, axis=-1)
  m = nn.sigmoid(xf2 + mf) * jnp.tanh(cv(m, "memory_in_kernel")) + \
      nn.sigmoid(xi2 + mi) * jnp.tanh(xg2 + mg)
  cm = jnp.concatenate([c, m], -1)
  o = jnp.tanh(xo + cv(cm, "output_kernel"))
  h = o * jnp.tanh((cm.astype(dtype) @ p["fuse_kernel"][0, 0].astype(dtype)).astype(jnp.float32))
  return c, h, m


class GHUParams(nn.Module):
  """Gradient highway unit parameters: input_kernel (k, k, F, 2F) and state_kernel (k, k, F,
  2F) for [P, S], bias (2F,)."""

  features: int
  kernel_size: int

  @nn.compact
  def __call__(self):
    k, f = (self.kernel_size, self.kernel_size), self.features
    return {"input_kernel": self.param("input_kernel", _INIT, k + (f, 2 * f)),
            "state_kernel": self.param("state_kernel", _INIT, k + (f, 2 * f)),
            "bias": self.param("bias", nn.initializers.zeros, (2 * f,))}


def ghu(p, x, z, dtype=jnp.float32):
  """One GHU step: x, z (B, H, W, F) -> Z_t."""
  a = (conv2d(x.astype(dtype), p["input_kernel"].astype(dtype)) +
       conv2d(z.astype(dtype), p["state_kernel"].astype(dtype))).astype(jnp.float32) + p["bias"]
  pp, s = jnp.split(a, 2, axis=-1)
  s = nn.sigmoid(s)
  return s * jnp.tanh(pp) + (1 - s) * z


_CELLS = {"st_lstm": (STLSTMParams, st_lstm), "causal_lstm": (CausalLSTMParams, causal_lstm)}


class PredRNN(nn.Module, kw_only=True):
  """PredRNN (cell='st_lstm') or PredRNN++ (cell='causal_lstm', with the GHU after layer 0):
  (B, Tin, H, W, C) -> (B, Tin + Tout - 1, H, W, C), every next frame (module docstring).
  Parameters: cell{i}, ghu (PredRNN++ only), to_frames (kernel (F, P), bias (P,)), adapter
  (PredRNN-V2 only).

  PredRNN-V2 (Wang et al., TPAMI 2022) is cell='st_lstm' with `decouple_beta` > 0: in training
  the model sows decouple_beta x (the mean of `decoupling` over layers and steps, as OpenSTL
  averages it) into its 'losses' collection, which the train step adds to the loss; and its
  `teacher_forcing` may be (B, Tin + Tout - 2), one flag per step after the first (reverse
  scheduled sampling, models/sampling.py), instead of (B, Tout - 1) for the forecast steps."""

  output_frames: int
  features: Sequence[int] = (64, 64)
  kernel_size: int = 3
  patch_size: int = 1
  cell: str = "st_lstm"
  decouple_beta: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, targets=None, teacher_forcing=None, train: bool = False):
    _check(inputs, self.patch_size, type(self).__name__)
    if len(set(self.features)) != 1:
      raise ValueError(f"PredRNN needs equal features per layer (M passes between layers), "
                       f"got {tuple(self.features)}")
    b, t_in = inputs.shape[0], inputs.shape[1]
    steps = t_in + self.output_frames - 1
    frames = inputs if targets is None else jnp.concatenate([inputs, targets], 1)
    frames = to_patches(frames.astype(jnp.float32), self.patch_size)
    pad = steps - frames.shape[1]
    if pad > 0:
      frames = jnp.pad(frames, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
    frames = frames[:, :steps]
    if teacher_forcing is None or targets is None:
      forcing = jnp.zeros((b, self.output_frames - 1), jnp.float32)
    else:
      forcing = teacher_forcing.astype(jnp.float32)
    known = steps - forcing.shape[1]  # Steps that always read the true frame.
    use_true = jnp.concatenate([jnp.ones((b, known), jnp.float32), forcing], 1)
    make = _CELLS[self.cell][0]
    decouple = self.decouple_beta > 0 and self.cell == "st_lstm"
    f, chans = self.features[0], frames.shape[-1]
    cells = [make(f, self.kernel_size, chans if i == 0 else f, name=f"cell{i}")()
             for i in range(len(self.features))]
    highway = (GHUParams(f, self.kernel_size, name="ghu")()
               if self.cell == "causal_lstm" and len(self.features) > 1 else None)
    head = {"kernel": self.param("to_frames_kernel", _INIT, (f, chans)),
            "bias": self.param("to_frames_bias", nn.initializers.zeros, (chans,))}
    adapter = (self.param("adapter", _INIT, (f, f)) if decouple else None)
    spec = predrnn_scan.Spec(self.cell, self.kernel_size, known, deltas=decouple and train,
                             dtype=self.dtype)
    weights = {"cells": tuple(cells), "ghu": highway, "head": head}
    predictions, deltas = predrnn_scan.predrnn_sequence(spec, weights, jnp.swapaxes(frames, 0, 1),
                                                        use_true.T)
    if spec.deltas:
      dc, dm = (d.reshape((-1,) + d.shape[3:]) for d in deltas)
      # The mean over layers and steps of each one's mean over batch and channels.
      self.sow("losses", "decoupling", self.decouple_beta * decoupling(adapter, dc, dm))
    return from_patches(jnp.swapaxes(predictions, 0, 1), self.patch_size)
