"""The linear maps inside recurrent layers (dense, and 2-D convolution with 'SAME' padding), each in
the three forms a hand-written backward pass needs.

For `y = m(x, w)` a map gives:
  - `m(x, w)`: the map itself, over any leading axes;
  - `m.input_grad(dy, m.transpose_weight(w))`: dL/dx written as a *forward* map with a transposed
    kernel, so that inside a time loop XLA only ever sees forward dots/convolutions;
  - `m.weight_grad(x, dy)`: dL/dw summed over every leading axis, in float32;
  - `m.per_step`: whether the recurrences (rnn_scan) should do the input-side work (input
    projection, input and weight gradients) step by step inside their loops (True) or batched
    over all steps outside them (False).

Why: XLA:CPU runs the transposed convolutions that autodiff emits (the input-gradient and above all
the weight-gradient forms) 2-5x slower than forward convolutions, and ~100x slower inside
`lax.scan`. Forward-form convolutions and plain matmuls run at full speed everywhere.
"""

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp
from jax import lax

from dcrn_jax.models import conv

_F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class DenseMap:
  """y = x @ w: x (..., D), w (D, G) -> y (..., G)."""

  # Per-step matmuls of a few rows waste the hardware; batched over all T*N rows they do not.
  per_step = False

  def __call__(self, x, w):
    return jnp.dot(x, w)

  def transpose_weight(self, w):
    return w.T

  def input_grad(self, dy, w_t):
    return jnp.dot(dy, w_t)

  def weight_grad(self, x, dy):
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return lax.dot_general(x2, dy2, (((0,), (0,)), ((), ())), preferred_element_type=_F32)


@dataclasses.dataclass(frozen=True)
class Conv2DMap:
  """Stride-1 'SAME' 2-D convolution, channels-last: x (..., H, W, C), w (kh, kw, C, G) ->
  y (..., H, W, G). Every axis before H is a batch axis (e.g. time and batch)."""

  kernel_size: Tuple[int, int]

  @property
  def per_step(self):
    # CPU: a step's maps keep the cores busy and stay in cache, which measured faster than
    # batching over all steps (see rnn_scan). Accelerators prefer the few large batched ops
    # (not measured: no GPU was available when this was written).
    return jax.default_backend() == "cpu"

  @property
  def _pads(self):
    # 'SAME' for stride 1: (k-1)//2 before, k//2 after (asymmetric for even kernels).
    return tuple(((k - 1) // 2, k // 2) for k in self.kernel_size)

  def _conv(self, x, w, pads):
    lead = x.shape[:-3]
    y = lax.conv_general_dilated(x.reshape((-1,) + x.shape[-3:]), w, (1, 1), pads,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.reshape(lead + y.shape[1:])

  def __call__(self, x, w):
    return self._conv(x, w, self._pads)

  def transpose_weight(self, w):
    return jnp.flip(w, (0, 1)).swapaxes(2, 3)

  def input_grad(self, dy, w_t):
    # The adjoint of a correlation is the correlation with the flipped, transposed kernel, with
    # the padding mirrored.
    return self._conv(dy, w_t, tuple((hi, lo) for lo, hi in self._pads))

  def weight_grad(self, x, dy):
    return lax.platform_dependent(x, dy, cpu=self._weight_grad_matmuls,
                                  default=self._weight_grad_conv)

  def _weight_grad_matmuls(self, x, dy):
    # dw[i, j] = shift_ij(x)^T @ dy (conv.weight_grad_taps), contracting over every pixel of
    # every frame: on XLA:CPU 1.5-3x faster than the weight-gradient convolution autodiff emits.
    # For 5-D inputs it runs block by block over the first axis (time), so that each block of dy
    # is read from memory once and stays in cache for all k*k taps.
    (kh, kw), c, g = self.kernel_size, x.shape[-1], dy.shape[-1]

    def block(xb, dyb):
      return conv.weight_grad_taps(xb.reshape((-1,) + xb.shape[-3:]),
                                   dyb.reshape((-1,) + dyb.shape[-3:]), self.kernel_size,
                                   (1, 1), self._pads)

    if x.ndim == 5:
      dw, _ = lax.scan(lambda dw, xy: (dw + block(*xy), None),
                       jnp.zeros((kh * kw * c, g), _F32), (x, dy))
    else:
      dw = block(x, dy)
    return dw.reshape((kh, kw, c, g))

  def _weight_grad_conv(self, x, dy):
    # Accelerators (cuDNN and friends) have fast weight-gradient convolutions: use autodiff's.
    x = x.reshape((-1,) + x.shape[-3:])
    dy = dy.reshape((-1,) + dy.shape[-3:])
    w0 = jnp.zeros(self.kernel_size + (x.shape[-1], dy.shape[-1]), x.dtype)
    return jax.vjp(lambda w: self._conv(x, w, self._pads), w0)[1](dy)[0].astype(_F32)
