"""The linear maps inside recurrent layers (dense, and 2-D convolution with 'SAME' padding), each in
the three forms a hand-written backward pass needs.

For `y = m(x, w)` a map gives:
  - `m(x, w)`: the map itself, over any leading axes;
  - `m.input_grad(dy, m.transpose_weight(w))`: dL/dx written as a *forward* map with a transposed
    kernel, so that inside a time loop XLA only ever sees forward dots/convolutions;
  - `m.weight_grad(x, dy)`: dL/dw summed over every leading axis, in float32;
  - `m.per_step`: whether the recurrences (rnn_scan) do the input-side work (input projection,
    input and weight gradients) step by step inside their loops (True) or batched over all
    steps outside them (False).

Why: XLA:CPU runs the transposed convolutions that autodiff emits (the input-gradient and above all
the weight-gradient forms) slower than forward convolutions, and far slower inside `lax.scan`
(figures: docs/guides/speed.md). Forward-form convolutions and plain matmuls run at
full speed everywhere. Which forms a convolution uses on which platform is decided in one place,
`conv.cpu_forms()`.
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
    # batching over all steps. Accelerators prefer the few large batched ops.
    return conv.cpu_forms()

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
    if conv.cpu_forms():
      return self.weight_grad_matmuls(x, dy)
    return self.weight_grad_conv(x, dy)

  def weight_grad_matmuls(self, x, dy):
    """dw[i, j] = shift_ij(x)^T @ dy (conv.weight_grad_taps), contracting over every pixel of
    every frame: XLA:CPU runs these matmuls faster than the weight-gradient convolution."""
    (kh, kw), c, g = self.kernel_size, x.shape[-1], dy.shape[-1]
    dw = conv.weight_grad_taps(x.reshape((-1,) + x.shape[-3:]), dy.reshape((-1,) + dy.shape[-3:]),
                               self.kernel_size, (1, 1), self._pads)
    return dw.reshape((kh, kw, c, g))

  def weight_grad_conv(self, x, dy):
    """Autodiff's weight-gradient convolution, which accelerators (cuDNN and friends) run well."""
    x = x.reshape((-1,) + x.shape[-3:])
    dy = dy.reshape((-1,) + dy.shape[-3:])
    w0 = jnp.zeros(self.kernel_size + (x.shape[-1], dy.shape[-1]), x.dtype)
    return jax.vjp(lambda w: self._conv(x, w, self._pads), w0)[1](dy)[0].astype(_F32)
