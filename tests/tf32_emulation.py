"""Emulates, on a CPU, what JAX's default precision does on an NVIDIA GPU: float32 matmuls and
convolutions read their inputs as TF32 (a 10-bit mantissa instead of 23).

`install()` wraps jax.lax.dot_general and jax.lax.conv_general_dilated (and the functions
jax.numpy calls at run time) so that, unless the call or the context asks for more than the
default precision, float32 operands are first rounded to the nearest TF32 value (ties to even):

    bits(x) -> (bits(x) + 0xFFF + bit13(x)) & ~0x1FFF

Used by `pytest --emulate-tf32` (tests/conftest.py) to show which comparisons need the
`highest_precision` pin before an accelerator is at hand. It is a lower bound of the GPU's
effect: calls bound before install (jnp.einsum's default argument) and the transposed dots of
automatic differentiation keep full precision.
"""

import jax
from jax import lax
import jax.numpy as jnp

_DEFAULTS = (None, "default", "DEFAULT", "bfloat16", "fastest")


def to_tf32(x):
  """float32 x rounded to TF32's 10-bit mantissa (stored as float32); other dtypes unchanged."""
  x = jnp.asarray(x)
  if x.dtype != jnp.float32:
    return x
  bits = lax.bitcast_convert_type(x, jnp.uint32)
  bits = (bits + jnp.uint32(0xFFF) + ((bits >> 13) & jnp.uint32(1))) & jnp.uint32(0xFFFFE000)
  return lax.bitcast_convert_type(bits, jnp.float32)


def _is_default(precision) -> bool:
  from jax._src import config  # pylint: disable=g-import-not-at-top
  if precision is not None:
    values = precision if isinstance(precision, tuple) else (precision,)
    if any(v is not None and v != lax.Precision.DEFAULT for v in values):
      return False
  return config.default_matmul_precision.value in _DEFAULTS


def _wrap(fn, precision_index):
  def wrapped(lhs, rhs, *args, **kwargs):
    precision = kwargs.get("precision", args[precision_index] if len(args) > precision_index
                           else None)
    if _is_default(precision):
      lhs, rhs = to_tf32(lhs), to_tf32(rhs)
    return fn(lhs, rhs, *args, **kwargs)
  wrapped.__wrapped__ = fn
  return wrapped


def install():
  """Patches the dot and convolution entry points for the rest of the process."""
  from jax._src.lax import convolution, lax as lax_impl  # pylint: disable=g-import-not-at-top
  dot = _wrap(lax_impl.dot_general, 1)  # (lhs, rhs, dimension_numbers, precision, ...)
  conv = _wrap(convolution.conv_general_dilated, 8)  # precision is the 11th parameter.
  lax_impl.dot_general = jax.lax.dot_general = dot
  convolution.conv_general_dilated = jax.lax.conv_general_dilated = conv
