"""The linear maps inside recurrent layers (dense, and 2-D convolution with 'SAME' padding), each in
the three forms a hand-written backward pass needs.

For `y = m(x, w)` a map gives:
  - `m(x, w)`: the map itself, over any leading axes;
  - `m.input_grad(dy, m.transpose_weight(w))`: dL/dx written as a *forward* map with a transposed
    kernel, so that inside a time loop XLA only ever sees forward dots/convolutions;
  - `m.weight_grad(x, dy)`: dL/dw summed over every leading axis (all time steps at once), in
    float32.

Why: XLA:CPU runs the transposed convolutions that autodiff emits (the input-gradient and above all
the weight-gradient forms) 5-100x slower than forward convolutions, and slowest inside `lax.scan`.
Forward-form convolutions and plain matmuls run at full speed everywhere.

`project(m, x, w, dtype)` is the map with a custom VJP built from those forms: the layers use it
for the input projection of all frames, hoisted out of the time loop.
"""

import dataclasses
from functools import partial
from typing import Any, Tuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32
# Largest k*k*C for which the weight gradient uses one patch matrix (measured on XLA:CPU: 4x
# faster than per-tap matmuls for C <= 3 with 3x3 kernels, even at C = 16, slower at C = 32).
_PATCHES_MAX = 144


@dataclasses.dataclass(frozen=True)
class DenseMap:
  """y = x @ w: x (..., D), w (D, G) -> y (..., G)."""

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
    # dw[i, j] = shift_ij(x)^T @ dy, contracting over every pixel of every frame, on XLA:CPU
    # 1.5-3x faster than the weight-gradient convolution autodiff emits (~100x faster than that
    # convolution inside a loop). It runs block by block over the first axis (time steps), so
    # that each block of dy is read from memory once and stays in cache for all k*k taps. Few
    # input channels: one matmul per block on the k*k*C patches; many: one matmul per tap.
    (kh, kw), (h, w), c, g = self.kernel_size, x.shape[-3:-1], x.shape[-1], dy.shape[-1]
    blocks = x.shape[0] if x.ndim == 5 else 1
    x = x.reshape((blocks, -1) + x.shape[-3:])
    dy = dy.reshape((blocks, -1, g))
    contract = (((0,), (0,)), ((), ()))

    def block(dw, inputs):
      xb, dyb = inputs
      xp = jnp.pad(xb, ((0, 0),) + self._pads + ((0, 0),))
      taps = [xp[:, i:i + h, j:j + w].reshape(-1, c) for i in range(kh) for j in range(kw)]
      if kh * kw * c <= _PATCHES_MAX:
        patches = jnp.concatenate(taps, -1)
        return dw + lax.dot_general(patches, dyb, contract, preferred_element_type=_F32), None
      return dw + jnp.concatenate([lax.dot_general(t, dyb, contract, preferred_element_type=_F32)
                                   for t in taps], 0), None

    dw, _ = lax.scan(block, jnp.zeros((kh * kw * c, g), _F32), (x, dy))
    return dw.reshape((kh, kw, c, g))

  def _weight_grad_conv(self, x, dy):
    # Accelerators (cuDNN and friends) have fast weight-gradient convolutions: use autodiff's.
    x = x.reshape((-1,) + x.shape[-3:])
    dy = dy.reshape((-1,) + dy.shape[-3:])
    w0 = jnp.zeros(self.kernel_size + (x.shape[-1], dy.shape[-1]), x.dtype)
    return jax.vjp(lambda w: self._conv(x, w, self._pads), w0)[1](dy)[0].astype(_F32)


@partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def project(m, x, w, dtype: Any):
  """`m(x, w)` computed in `dtype`, whose gradients use only forward-form ops (see module doc).

  x: (..., C) in any float dtype; w: parameter (float32 usually). Returns (..., G) in `dtype`;
  the weight's gradient is accumulated in float32 and returned in w's own dtype.
  """
  return m(x.astype(dtype), w.astype(dtype))


def _project_fwd(m, x, w, dtype):
  return project(m, x, w, dtype), (x, w)


def _project_bwd(m, dtype, res, dy):
  x, w = res
  dx = m.input_grad(dy, m.transpose_weight(w.astype(dtype)))
  dw = m.weight_grad(x.astype(dtype), dy)
  return dx.astype(x.dtype), dw.astype(w.dtype)


project.defvjp(_project_fwd, _project_bwd)
