"""Convolution and max-pooling with backward passes that are fast on XLA:CPU.

`Conv` is a drop-in for `flax.linen.Conv` (2-D, channels-last, same parameter names, shapes and
initialisers, so checkpoints and initial values are the same); `max_pool` matches
`flax.linen.max_pool` with window == stride and 'VALID' padding. Forward values are the very same
XLA ops; only the gradients are computed differently:

  - the weight gradient of a convolution, which autodiff emits as a "backward-filter" convolution
    that XLA:CPU runs slower than the forward one, is written as matmuls over shifted views of
    the input (one per kernel tap, or one over the k*k*C patch matrix when that is small), block
    by block over the batch so that each block stays in cache. Accelerators keep autodiff's
    form, which cuDNN and friends run well: `cpu_forms()` below is the one place where the
    models choose between CPU and accelerator code;
  - the gradient of max-pooling, which autodiff emits as select-and-scatter (on XLA:CPU many
    times the cost of the pooling itself), is a mask of each window's maximum: the first maximal
    element of a window gets the gradient, as with select-and-scatter.

Measured speed-ups: docs/guides/speed.md and benchmarks/RESULTS.md.
"""

import contextlib
import contextvars
from typing import Any, Callable, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32
_DN = ("NHWC", "HWIO", "NHWC")
# Largest k*k*C for which the weight gradient uses one patch matrix (measured on XLA:CPU: 4x
# faster than per-tap matmuls for C <= 3 with 3x3 kernels, even at C = 16, slower at C = 32).
PATCHES_MAX = 144
# Bytes of one block of the weight-gradient matmuls (its patch matrix, or its input and output
# rows): blocks of ~1-4 MB measured 1.5-5x faster than one pass over a large batch on XLA:CPU.
_BLOCK_BYTES = 4 << 20

Pads = Tuple[Tuple[int, int], Tuple[int, int]]
# The platform whose forms `forms_for` asks for while tracing; None: the default backend's.
_FORMS_FOR = contextvars.ContextVar("dcrn_jax_forms_for", default=None)


def cpu_forms() -> bool:
  """Whether the models run their XLA:CPU forms: the one place that chooses between CPU and
  accelerator code, decided when tracing, from the default backend (or, inside `forms_for`,
  from the platform named there).

  True (CPU): weight gradients of convolutions are matmuls over shifted inputs (`Conv` here, the
  recurrent layers' maps in `rnn_maps`), and the convolutional recurrences do their input-side
  work step by step inside their loops (`rnn_scan`). False (GPU, TPU): autodiff's
  weight-gradient convolutions, and the recurrences' input-side work batched over all steps.
  """
  return (_FORMS_FOR.get() or jax.default_backend()) == "cpu"


@contextlib.contextmanager
def forms_for(platform: str):
  """Within the block, models trace their forms for `platform` ('cpu', 'cuda', 'tpu'), not the
  default backend's: for code lowered for other machines (jax.export, `lax.platform_dependent`
  branches). The setting is the calling context's own (a ContextVar), reset on leaving."""
  token = _FORMS_FOR.set(platform)
  try:
    yield
  finally:
    _FORMS_FOR.reset(token)


def weight_grad_taps(x, dy, kernel_size: Tuple[int, int], strides: Tuple[int, int],
                     pads: Pads):
  """dL/dw of `y = conv(x, w)` as matmuls over shifted views of x, summed over the batch.

  x (N, H, W, C), dy (N, Ho, Wo, G) -> (kh * kw * C, G) in float32, rows ordered (i, j, c) as
  the HWIO kernel flattened. dw[i, j] = tap_ij(x)^T @ dy, where tap_ij is x shifted by the tap
  (and subsampled by the stride), contracted over every output pixel of every image.
  """
  (kh, kw), (sh, sw) = kernel_size, strides
  ho, wo, c, g = dy.shape[1], dy.shape[2], x.shape[-1], dy.shape[-1]
  xp = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  taps = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
          for i in range(kh) for j in range(kw)]
  taps = [t.reshape(-1, c) for t in taps]
  dy = dy.reshape(-1, g)
  contract = (((0,), (0,)), ((), ()))
  if kh * kw * c <= PATCHES_MAX:
    return lax.dot_general(jnp.concatenate(taps, -1), dy, contract, preferred_element_type=_F32)
  return jnp.concatenate([lax.dot_general(t, dy, contract, preferred_element_type=_F32)
                          for t in taps], 0)


def _num_blocks(n: int, bytes_per_item: int) -> int:
  """The fewest blocks (a divisor of n) whose items take at most _BLOCK_BYTES each."""
  for d in range(1, n + 1):
    if n % d == 0 and (n // d) * bytes_per_item <= _BLOCK_BYTES:
      return d
  return n


def weight_grad_blocked(x, dy, kernel_size, strides, pads):
  """weight_grad_taps over blocks of the batch (a lax.scan), reshaped to the HWIO kernel."""
  (kh, kw), c, g = kernel_size, x.shape[-1], dy.shape[-1]
  rows = dy.shape[1] * dy.shape[2]
  width = kh * kw * c if kh * kw * c <= PATCHES_MAX else c + g
  nb = _num_blocks(x.shape[0], rows * width * 4)
  if nb == 1:
    dw = weight_grad_taps(x, dy, kernel_size, strides, pads)
  else:
    xb = x.reshape((nb, -1) + x.shape[1:])
    dyb = dy.reshape((nb, -1) + dy.shape[1:])
    dw, _ = lax.scan(
        lambda acc, b: (acc + weight_grad_taps(*b, kernel_size, strides, pads), None),
        jnp.zeros((kh * kw * c, g), _F32), (xb, dyb))
  return dw.reshape((kh, kw, c, g))


def _conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


# strides and pads are static (hashable tuples), not differentiated.
_conv2d = jax.custom_vjp(_conv, nondiff_argnums=(2, 3))


def _conv2d_fwd(x, w, strides, pads):
  return _conv(x, w, strides, pads), (x, w)


def _conv2d_bwd(strides, pads, res, dy):
  x, w = res
  dx = jax.vjp(lambda x_: _conv(x_, w, strides, pads), x)[1](dy)[0]

  if cpu_forms():
    dw = weight_grad_blocked(x, dy, w.shape[:2], strides, pads)
  else:
    dw = jax.vjp(lambda w_: _conv(x, w_, strides, pads), w)[1](dy)[0]
  return dx, dw.astype(w.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x, w, strides: Tuple[int, int] = (1, 1),
           padding: Union[str, Sequence[Tuple[int, int]]] = "SAME"):
  """2-D convolution, channels-last: x (N, H, W, C), w (kh, kw, C, G) -> (N, Ho, Wo, G).

  Same result as `lax.conv_general_dilated(x, w, strides, padding, ("NHWC", "HWIO", "NHWC"))`,
  with the weight gradient computed as blocked matmuls on CPU (see the module docstring).
  """
  strides = tuple(int(s) for s in strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
  else:
    pads = padding
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  kh, kw = w.shape[:2]
  if (kh, kw) == strides and all(p == (0, 0) for p in pads) and x.shape[1] % kh == 0 and \
      x.shape[2] % kw == 0:
    return _patchify(x, w)
  return _conv2d(x, w, strides, pads)


def _patchify(x, w):
  """A kernel-size == stride convolution without padding (a patchify stem) as one matmul over
  the non-overlapping patches: its gradients are then plain matmuls too, no convolution."""
  n, h, wd, c = x.shape
  kh, kw, _, g = w.shape
  p = x.reshape(n, h // kh, kh, wd // kw, kw, c).transpose(0, 1, 3, 2, 4, 5)
  p = p.reshape(n, h // kh, wd // kw, kh * kw * c)
  return jnp.dot(p, w.reshape(kh * kw * c, g))


class Conv(nn.Module):
  """`flax.linen.Conv` for 2-D channels-last inputs (N, H, W, C), with conv2d's fast gradient.

  Parameters `kernel` (kh, kw, C, features) and `bias` (features,) with nn.Conv's initialisers:
  the same rng gives the same initial values, and checkpoints of either load into the other.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Union[str, Sequence[Tuple[int, int]]] = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    if x.ndim != 4:
      raise ValueError(f"Conv takes (N, H, W, C) inputs, got shape {x.shape}")
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,),
                      self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, tuple(self.strides), self.padding)
    return y if bias is None else y + bias


def _pool_values(x, k):
  return lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), lax.max, (1, k, k, 1), (1, k, k, 1),
                           "VALID")


_pool = jax.custom_vjp(_pool_values, nondiff_argnums=(1,))


def _pool_fwd(x, k):
  y = _pool_values(x, k)
  return y, (x, y)


def _pool_bwd(k, res, dy):
  x, y = res
  n, ho, wo, c = y.shape
  # The pooled region (odd trailing rows/columns are outside every window and get zero).
  xr = x[:, :ho * k, :wo * k].reshape(n, ho, k, wo, k, c)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for a in range(k):
    cols = []
    for b in range(k):
      hit = (xr[:, :, a, :, b] == y) & ~taken  # first maximal element of each window
      taken = taken | hit
      cols.append(jnp.where(hit, dy, jnp.zeros((), dy.dtype)))
    rows.append(jnp.stack(cols, axis=3))  # (n, ho, wo, k, c)
  dx = jnp.stack(rows, axis=2).reshape(n, ho * k, wo * k, c)
  dx = jnp.pad(dx, ((0, 0), (0, x.shape[1] - ho * k), (0, x.shape[2] - wo * k), (0, 0)))
  return (dx,)


_pool.defvjp(_pool_fwd, _pool_bwd)


def max_pool(x, window: int = 2):
  """window x window max-pooling with stride `window`, 'VALID': (N, H, W, C) ->
  (N, H // window, W // window, C). Same values and gradients as
  `nn.max_pool(x, (window, window), strides=(window, window))`."""
  if x.ndim != 4:
    raise ValueError(f"max_pool takes (N, H, W, C) inputs, got shape {x.shape}")
  return _pool(x, int(window))
