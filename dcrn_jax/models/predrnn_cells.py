"""The PredRNN family's cells one step forward and one step backward, written out by hand for the
whole-sequence scan in `predrnn_scan.py` (its module docstring says why).

The equations are predrnn.py's module docstring (`st_lstm`, `causal_lstm`, `ghu` there are the
same forward steps, differentiated by autodiff: the specification these are tested against).
Each cell has three functions on (B, H, W, .) arrays, channels-last, F features:

  forward(ops, p, gx, c, h, m, x) -> ((c', h', m'), residuals, (i . g, i' . g') or None)
      x the cell's input X, gx = W_x * X + b its input side, already convolved (B, H, W, 7F);
  backward(ops, p, pt, r, dh, dc, dm, ddelta, need_dx)
      -> (dx, dh_in, dc_in, dm_in, gate cotangents): dh, dc, dm are the cotangents of h', c', m'
      (ddelta of the memory increments, PredRNN-V2; None: zero), pt the kernels transposed for
      the input gradients (`transposed`); dx is the gradient of the input X (None unless
      need_dx); the gate cotangents are what the weight gradients need;
  weight_grads(ops, p, r, g) -> the parameters' gradients summed over every leading axis of the
      residuals r and gate cotangents g (e.g. all T steps at once, after the loop).

Every convolution of a backward step is a forward-form convolution with a transposed kernel
(`Ops.conv_t`), and no weight gradient is taken inside a loop.

Derivatives used (s the sigmoid): s' = s (1 - s), tanh' = 1 - tanh^2; for c' = f . c + i . g:
dc = dc' . f, d(pre_f) = dc' . c . f', d(pre_i) = dc' . g . i', d(pre_g) = dc' . i . g'.
"""

import dataclasses
from typing import Any

import jax.numpy as jnp
from jax import lax

from dcrn_jax.models.rnn_maps import Conv2DMap

_F32 = jnp.float32


def sigmoid(x):
  """jax.nn.sigmoid's values through one tanh, which XLA:CPU computes faster than the logistic."""
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


def sum_lead(x):
  """Sum over every axis but the last, in float32 (a bias gradient), as ones @ x: XLA:CPU runs
  this small-output reduction as a matrix-vector product faster than as a reduce."""
  x2 = x.reshape(-1, x.shape[-1])
  return lax.dot_general(jnp.ones(x2.shape[:1], x2.dtype), x2, (((0,), (0,)), ((), ())),
                         preferred_element_type=_F32)


@dataclasses.dataclass(frozen=True)
class Ops:
  """The maps of a stack: 'SAME' k x k convolutions and 1 x 1 (dense) maps in the compute dtype
  `dtype`, their results float32."""

  kernel_size: int
  dtype: Any = _F32

  @property
  def m(self):
    return Conv2DMap((self.kernel_size, self.kernel_size))

  def conv(self, x, w):
    return self.m(x.astype(self.dtype), w.astype(self.dtype)).astype(_F32)

  def conv_t(self, dy, w_t):
    """dL/dx of conv(x, w) for dL/dy = dy, with w_t = transpose(w) (a forward convolution)."""
    return self.m.input_grad(dy.astype(self.dtype), w_t).astype(_F32)

  def transpose(self, w):
    return self.m.transpose_weight(w.astype(self.dtype))

  def dense(self, x, w):
    return jnp.dot(x.astype(self.dtype), w.astype(self.dtype)).astype(_F32)

  def conv_grad(self, x, dy):
    """dL/dw of conv(x, w), summed over every leading axis (T, B, ...): one weight-gradient
    convolution over all steps, on every platform. On XLA:CPU it measured faster here than the
    matmul forms of conv.py (which win inside loops): PredRNN's train step 448 against 527 ms at
    bench_forecast.py's shapes, 3.1 against 5.5 s with 16 x 16 maps of 64 features."""
    return self.m.weight_grad_conv(x.astype(self.dtype), dy.astype(self.dtype))

  def dense_grad(self, x, dy):
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    return lax.dot_general(x2.astype(self.dtype), dy2.astype(self.dtype),
                           (((0,), (0,)), ((), ())), preferred_element_type=_F32)


def _split(x, n):
  return jnp.split(x, n, axis=-1)


def _cat(*xs):
  return jnp.concatenate(xs, -1)


def _like(grads, p):
  """Gradients cast to their parameters' dtypes."""
  return {k: v.astype(p[k].dtype) for k, v in grads.items()}


# ----------------------------------------------------------------------------------------------
# ST-LSTM (PredRNN): gates [i, f, g, i', f', g', o] on the input side, [i, f, g, o] from H,
# [i', f', g'] from M. Residuals: x, c, h, m (the step's inputs), acts (the 7 gates),
# ty = tanh(W_11 [C', M']), cm = [C', M'].


class STLSTM:
  """ST-LSTM's forward and backward steps (module docstring)."""

  @staticmethod
  def transposed(ops, p):
    return {k: ops.transpose(p[k]) for k in ("input_kernel", "hidden_kernel", "memory_kernel",
                                             "output_kernel")}

  @staticmethod
  def forward(ops, p, gx, c, h, m, x):
    xi, xf, xg, xi2, xf2, xg2, xo = _split(gx, 7)
    hi, hf, hg, ho = _split(ops.conv(h, p["hidden_kernel"]), 4)
    mi, mf, mg = _split(ops.conv(m, p["memory_kernel"]), 3)
    i, f, g = sigmoid(xi + hi), sigmoid(xf + hf), jnp.tanh(xg + hg)
    i2, f2, g2 = sigmoid(xi2 + mi), sigmoid(xf2 + mf), jnp.tanh(xg2 + mg)
    dc, dm = i * g, i2 * g2
    c2, m2 = f * c + dc, f2 * m + dm
    cm = _cat(c2, m2)
    o = sigmoid(xo + ho + ops.conv(cm, p["output_kernel"]))
    ty = jnp.tanh(ops.dense(cm, p["fuse_kernel"][0, 0]))
    residuals = (x, c, h, m, _cat(i, f, g, i2, f2, g2, o), ty, cm)
    return (c2, o * ty, m2), residuals, (dc, dm)

  @staticmethod
  def backward(ops, p, pt, r, dh, dc, dm, ddelta, need_dx):
    _, c, _, m, acts, ty, _ = r
    i, f, g, i2, f2, g2, o = _split(acts, 7)
    feats = c.shape[-1]
    d_o = dh * ty * o * (1.0 - o)
    dy = dh * o * (1.0 - ty * ty)
    dcm = ops.dense(dy, p["fuse_kernel"][0, 0].T) + ops.conv_t(d_o, pt["output_kernel"])
    dc, dm = dc + dcm[..., :feats], dm + dcm[..., feats:]
    dig, dim = (dc, dm) if ddelta is None else (dc + ddelta[0], dm + ddelta[1])
    d_i, d_f, d_g = dig * g * i * (1.0 - i), dc * c * f * (1.0 - f), dig * i * (1.0 - g * g)
    d_i2, d_f2 = dim * g2 * i2 * (1.0 - i2), dm * m * f2 * (1.0 - f2)
    d_g2 = dim * i2 * (1.0 - g2 * g2)
    d7 = _cat(d_i, d_f, d_g, d_i2, d_f2, d_g2, d_o)
    dh_in = ops.conv_t(_cat(d_i, d_f, d_g, d_o), pt["hidden_kernel"])
    dm_in = dm * f2 + ops.conv_t(d7[..., 3 * feats:6 * feats], pt["memory_kernel"])
    dx = ops.conv_t(d7, pt["input_kernel"]) if need_dx else None
    return dx, dh_in, dc * f, dm_in, (d7, dy)

  @staticmethod
  def weight_grads(ops, p, r, g):
    x, _, h, m, _, _, cm = r
    d7, dy = g
    f = h.shape[-1]
    return _like({
        "input_kernel": ops.conv_grad(x, d7), "bias": sum_lead(d7),
        "hidden_kernel": ops.conv_grad(h, _cat(d7[..., :3 * f], d7[..., 6 * f:])),
        "memory_kernel": ops.conv_grad(m, d7[..., 3 * f:6 * f]),
        "output_kernel": ops.conv_grad(cm, d7[..., 6 * f:]),
        "fuse_kernel": ops.dense_grad(cm, dy)[None, None]}, p)


# ----------------------------------------------------------------------------------------------
# Causal LSTM (PredRNN++): input-side gates [g, i, f, g', i', f', o]; [H, C] -> [g, i, f]
# (hidden_kernel, cell_kernel), M -> [g', i', f'] and W_3 M (memory_kernel, memory_in_kernel),
# C' -> [g', i', f'] (cell_memory_kernel), [C', M'] -> o (output_kernel), W_5 (fuse_kernel).
# Residuals: x, c, h, m, acts (the 7 gates), mm = tanh(W_3 * M), ty, cm = [C', M'].


class CausalLSTM:
  """The causal LSTM's forward and backward steps (module docstring)."""

  @staticmethod
  def _hc(p):
    return jnp.concatenate([p["hidden_kernel"], p["cell_kernel"]], 2)

  @staticmethod
  def _m(p):
    return jnp.concatenate([p["memory_kernel"], p["memory_in_kernel"]], 3)

  @staticmethod
  def transposed(ops, p):
    return {"input_kernel": ops.transpose(p["input_kernel"]), "hc": ops.transpose(CausalLSTM._hc(p)),
            "m": ops.transpose(CausalLSTM._m(p)),
            "cell_memory_kernel": ops.transpose(p["cell_memory_kernel"]),
            "output_kernel": ops.transpose(p["output_kernel"])}

  @staticmethod
  def forward(ops, p, gx, c, h, m, x):
    f_ = c.shape[-1]
    xg, xi, xf, xg2, xi2, xf2, xo = _split(gx, 7)
    hg, hi, hf = _split(ops.conv(_cat(h, c), CausalLSTM._hc(p)), 3)
    g, i, f = jnp.tanh(xg + hg), sigmoid(xi + hi), sigmoid(xf + hf)
    c2 = f * c + i * g
    mb = ops.conv(m, CausalLSTM._m(p))
    mg, mi, mf = _split(mb[..., :3 * f_] + ops.conv(c2, p["cell_memory_kernel"]), 3)
    g2, i2, f2 = jnp.tanh(xg2 + mg), sigmoid(xi2 + mi), sigmoid(xf2 + mf)
    mm = jnp.tanh(mb[..., 3 * f_:])
    m2 = f2 * mm + i2 * g2
    cm = _cat(c2, m2)
    o = jnp.tanh(xo + ops.conv(cm, p["output_kernel"]))
    ty = jnp.tanh(ops.dense(cm, p["fuse_kernel"][0, 0]))
    residuals = (x, c, h, m, _cat(g, i, f, g2, i2, f2, o), mm, ty, cm)
    return (c2, o * ty, m2), residuals, None

  @staticmethod
  def backward(ops, p, pt, r, dh, dc, dm, ddelta, need_dx):
    del ddelta  # PredRNN-V2's term is the ST-LSTM's only.
    _, c, _, _, acts, mm, ty, _ = r
    g, i, f, g2, i2, f2, o = _split(acts, 7)
    feats = c.shape[-1]
    d_o = dh * ty * (1.0 - o * o)
    dy = dh * o * (1.0 - ty * ty)
    dcm = ops.dense(dy, p["fuse_kernel"][0, 0].T) + ops.conv_t(d_o, pt["output_kernel"])
    dc, dm = dc + dcm[..., :feats], dm + dcm[..., feats:]
    d_b = _cat(dm * i2 * (1.0 - g2 * g2), dm * g2 * i2 * (1.0 - i2), dm * mm * f2 * (1.0 - f2))
    d_mm = dm * f2 * (1.0 - mm * mm)
    dc = dc + ops.conv_t(d_b, pt["cell_memory_kernel"])
    dm_in = ops.conv_t(_cat(d_b, d_mm), pt["m"])
    d_a = _cat(dc * i * (1.0 - g * g), dc * g * i * (1.0 - i), dc * c * f * (1.0 - f))
    dhc = ops.conv_t(d_a, pt["hc"])
    d7 = _cat(d_a, d_b, d_o)
    dx = ops.conv_t(d7, pt["input_kernel"]) if need_dx else None
    return dx, dhc[..., :feats], dc * f + dhc[..., feats:], dm_in, (d7, d_mm, dy)

  @staticmethod
  def weight_grads(ops, p, r, g):
    x, c, h, m, _, _, _, cm = r
    d7, d_mm, dy = g
    f = h.shape[-1]
    hc = ops.conv_grad(_cat(h, c), d7[..., :3 * f])
    mw = ops.conv_grad(m, _cat(d7[..., 3 * f:6 * f], d_mm))
    return _like({
        "input_kernel": ops.conv_grad(x, d7), "bias": sum_lead(d7),
        "hidden_kernel": hc[:, :, :f], "cell_kernel": hc[:, :, f:],
        "memory_kernel": mw[..., :3 * f], "memory_in_kernel": mw[..., 3 * f:],
        "cell_memory_kernel": ops.conv_grad(cm[..., :f], d7[..., 3 * f:6 * f]),
        "output_kernel": ops.conv_grad(cm, d7[..., 6 * f:]),
        "fuse_kernel": ops.dense_grad(cm, dy)[None, None]}, p)


CELLS = {"st_lstm": STLSTM, "causal_lstm": CausalLSTM}


# ----------------------------------------------------------------------------------------------
# Gradient highway unit: [P, S] = W_x * X + W_z * Z + b (one convolution of [X, Z]),
# Z' = s(S) . tanh(P) + (1 - s(S)) . Z. Residuals: x, z, p = tanh(P), s = s(S).


def _ghu_kernel(p):
  return jnp.concatenate([p["input_kernel"], p["state_kernel"]], 2)


def ghu_transposed(ops, p):
  return ops.transpose(_ghu_kernel(p))


def ghu_forward(ops, p, x, z):
  """-> (Z', residuals)."""
  pp, s = _split(ops.conv(_cat(x, z), _ghu_kernel(p)) + p["bias"], 2)
  pp, s = jnp.tanh(pp), sigmoid(s)
  return s * pp + (1.0 - s) * z, (x, z, pp, s)


def ghu_backward(ops, pt, r, dz):
  """dz (cotangent of Z') -> (dx, dz_in, pre-activation cotangents)."""
  _, z, pp, s = r
  d = _cat(dz * s * (1.0 - pp * pp), dz * (pp - z) * s * (1.0 - s))
  dxz = ops.conv_t(d, pt)
  f = z.shape[-1]
  return dxz[..., :f], dz * (1.0 - s) + dxz[..., f:], d


def ghu_weight_grads(ops, p, r, d):
  x, z, _, _ = r
  w = ops.conv_grad(_cat(x, z), d)
  f = x.shape[-1]
  return _like({"input_kernel": w[:, :, :f], "state_kernel": w[:, :, f:], "bias": sum_lead(d)},
               p)

