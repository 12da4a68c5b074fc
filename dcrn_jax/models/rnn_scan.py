"""Whole-sequence LSTM and GRU recurrences with a hand-written backward pass (`jax.custom_vjp`).

The specification is `reference.py`: the same math as a plain step in a `lax.scan`, differentiated
by autodiff; tests/test_recurrent.py checks outputs, carries and every gradient of these functions
against it. Everything here is about speed on XLA:CPU, where autodiff of that plain scan is slow.

Both run time-major, over a map `m` from `rnn_maps` (dense or convolution):

  x (T, N, ..., C) -> hs (T, N, ..., F)     `...` empty for dense layers, (H, W) for conv ones.

The loop is one `lax.scan` (compile time does not depend on T); the forward scan saves each
step's gate activations for training (`LSTMResiduals`, `GRUResiduals`), so the backward pass
recomputes no matmul or convolution, and the backward scan's heavy ops are forward-form maps
(`m.input_grad`, kernels transposed once before the loop). Where the input-side work goes
depends on the map (`m.per_step`, decided by `conv.cpu_forms()`), so each cell has two backward
loops:
  - batched (dense layers; convolutions on accelerators): the input projection of all T steps is
    one op before the loop; the backward loop yields each step's gate gradients, and the input
    gradient and both weight gradients are then one batched op each over all T*N rows;
  - per step (convolutions on CPU): the step's input and hidden state go through one
    convolution with the two kernels stacked ([x_t, h] -> gates; GRUs need two), the backward
    step's input and hidden-state gradients are one convolution too, and both weight gradients
    accumulate in the loop while the step's gate gradients are still in cache (faster in the
    full train step on CPU: docs/guides/models.md, Fast recurrent layers).

The differentiable arguments and their cotangents are NamedTuples (`LSTMWeights`, `LSTMCarry`,
`LSTMGrads`, ...): the backward pass builds its cotangents by field name, and JAX checks their
structure against the arguments', so no order can drift silently.

Precision: matmuls/convolutions and saved activations use the compute dtype `Loop.dtype` (e.g.
bfloat16); gate arithmetic, the LSTM cell state and weight/bias gradients are float32. Gate
orders: LSTM i, f, g, o; GRU r, z, n (as PyTorch and Flax's OptimizedLSTMCell / GRUCell).
"""

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

_F32 = jnp.float32
Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Loop:
  """The static settings of a recurrence (not differentiated)."""

  m: Any  # a map of rnn_maps: DenseMap() or Conv2DMap(kernel_size)
  unroll: int = 1  # lax.scan's unroll
  dtype: Any = _F32  # compute dtype of the maps, saved activations and outputs


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Needs:
  """Which differentiable arguments the caller differentiates (static: part of the residuals'
  structure, not an array). The backward pass skips the work for the others, e.g. the input
  gradient of a first layer reading data, or the weight gradients of a frozen layer."""

  x: bool = True
  weights: bool = True


def _unwrap(arg):
  """A custom_vjp fwd argument with symbolic zeros (CustomVJPPrimal leaves) -> (values, whether
  any leaf is differentiated)."""
  leaves, tree = jax.tree.flatten(arg, is_leaf=lambda v: isinstance(v, CustomVJPPrimal))
  return tree.unflatten([v.value for v in leaves]), any(v.perturbed for v in leaves)


def _dense(ct):
  """A cotangent that may be a symbolic zero (an output nobody reads) -> an array."""
  return jnp.zeros(ct.shape, ct.dtype) if isinstance(ct, SymbolicZero) else ct


def _shift_in(first, rest):
  """[first, rest[0], ..., rest[T-2]]: each step's incoming state, from the states it produced."""
  return jnp.concatenate([first[None].astype(rest.dtype), rest[:-1]], axis=0)


def _sum_lead(x):
  """Sum over every axis but the last, in float32: a bias gradient.

  Written as ones @ x: XLA:CPU runs this small-output reduction as a matrix-vector product much
  faster than as a reduce (which it fuses with, and computes on, one core)."""
  x2 = x.reshape(-1, x.shape[-1])
  return lax.dot_general(jnp.ones(x2.shape[:1], x2.dtype), x2, (((0,), (0,)), ((), ())),
                         preferred_element_type=_F32)


def _sigmoid(x):
  # The same function as jax.nn.sigmoid; XLA:CPU computes tanh with a fast polynomial but
  # lowers the logistic to exp and a division, which is slower on the gate tensors.
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


def _sigmoid_or_tanh(x, is_tanh):
  """tanh where `is_tanh`, else the sigmoid (the values of `_sigmoid` and `jnp.tanh`), with one
  tanh per element: s * tanh(s * x) + (1 - s) for s = 1 or 1/2. Computing both functions on
  every gate and selecting (`where`) measured twice the transcendentals and memory passes."""
  s = jnp.where(is_tanh, 1.0, 0.5)
  return s * jnp.tanh(s * x) + (1.0 - s)


def _by_gate(x, gates):
  """(..., G*F) -> (..., G, F), and an index of the gate along axis -2 to select with.

  The gate arithmetic is written on the whole fused array with `where` on this index, not on
  split-and-concatenated pieces as in reference.py: XLA:CPU then emits one loop over all gates
  per step instead of one per gate plus a concatenation, which matters when a step's maps are
  small."""
  x = x.reshape(x.shape[:-1] + (gates, x.shape[-1] // gates))
  return x, lax.broadcasted_iota(jnp.int32, (gates, 1), 0)


# ----------------------------------------------------------------------------------------------
# LSTM: c' = f*c + i*g, h' = o*tanh(c'); carry (c, h) with c float32.


class LSTMWeights(NamedTuple):
  """An LSTM layer's parameters, gates fused on the last axis in the order i, f, g, o."""

  input_kernel: Array  # (C, 4F) or (kh, kw, C, 4F)
  recurrent_kernel: Array  # (F, 4F) or (kh, kw, F, 4F)
  bias: Array  # (4F,)


class LSTMCarry(NamedTuple):
  c: Array  # (N, ..., F) float32
  h: Array  # (N, ..., F) compute dtype


class LSTMResiduals(NamedTuple):
  """What the forward pass keeps for the backward pass."""

  acts: Array  # (T, N, ..., 4F) each step's gate activations i, f, g, o, compute dtype
  c_in: Array  # (T, N, ..., F) each step's incoming cell state, float32
  hs: Array  # (T, N, ..., F) the outputs
  x: Array
  weights: LSTMWeights
  carry: LSTMCarry  # the initial carry
  needs: Needs


class LSTMGrads(NamedTuple):
  """Cotangents of lstm_sequence's differentiable arguments, in the order of its signature."""

  x: Array
  weights: LSTMWeights
  carry: LSTMCarry


def _lstm_forward(loop: Loop, x, weights: LSTMWeights, carry: LSTMCarry, save: bool):
  m, dtype = loop.m, loop.dtype
  w_in, w_rec, b = weights
  if m.per_step:
    xs, w = x.astype(dtype), jnp.concatenate([w_in, w_rec], axis=-2).astype(dtype)
    gates = lambda x_t, h: m(jnp.concatenate([x_t, h], -1), w).astype(_F32)
  else:  # The input projection of every step at once, before the loop.
    xs, w = m(x.astype(dtype), w_in.astype(dtype)), w_rec.astype(dtype)
    gates = lambda xg_t, h: xg_t.astype(_F32) + m(h, w).astype(_F32)

  def step(carry, x_t):
    c, h = carry
    pre, gate = _by_gate(gates(x_t, h) + b.astype(_F32), 4)
    acts = _sigmoid_or_tanh(pre, gate == 2)  # i, f, g, o
    i, f, g, o = acts[..., 0, :], acts[..., 1, :], acts[..., 2, :], acts[..., 3, :]
    c_new = f * c + i * g
    h_new = (o * jnp.tanh(c_new)).astype(dtype)
    # The incoming c (not the new one) is saved: the backward step recomputes c' = f*c + i*g
    # exactly, and no shifted copy of the cell states is needed.
    saved = (acts.reshape(c.shape[:-1] + (-1,)).astype(dtype), c) if save else None
    return LSTMCarry(c_new, h_new), (h_new, saved)

  carry = LSTMCarry(carry.c.astype(_F32), carry.h.astype(dtype))
  carry, (hs, saved) = lax.scan(step, carry, xs, unroll=loop.unroll)
  return hs, carry, saved


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def lstm_sequence(loop: Loop, x, weights: LSTMWeights, carry: LSTMCarry):
  """LSTM over time: x (T, N, ..., C) -> (hs (T, N, ..., F) in `loop.dtype`, final LSTMCarry).

  The math: reference.lstm_reference (time-major here)."""
  hs, carry, _ = _lstm_forward(loop, x, weights, carry, save=False)
  return hs, carry


def _lstm_fwd(loop, x, weights, carry):
  (x, x_perturbed), (weights, w_perturbed) = _unwrap(x), _unwrap(weights)
  carry, _ = _unwrap(carry)
  hs, carry_out, (acts, c_in) = _lstm_forward(loop, x, weights, carry, save=True)
  return (hs, carry_out), LSTMResiduals(acts, c_in, hs, x, weights, carry,
                                        Needs(x_perturbed, w_perturbed))


def _lstm_bwd(loop: Loop, res: LSTMResiduals, cts):
  m, dtype, needs = loop.m, loop.dtype, res.needs
  dhs, d_last = _dense(cts[0]), LSTMCarry(*map(_dense, cts[1]))
  w_in, w_rec, b = res.weights
  xc, cin = res.x.astype(dtype), res.x.shape[-1]

  def gate_grads(dc, dh, a, c_prev, dy):
    # On the fused (..., 4F) arrays, not split by gate as (..., 4, F): XLA:CPU then computes the
    # result once for its readers (the input and weight gradients) instead of once for each.
    a = a.astype(_F32)
    i, f, g, o = jnp.split(a, 4, axis=-1)
    tc = jnp.tanh(f * c_prev + i * g)
    dh = dh + dy.astype(_F32)
    dc = dc + dh * o * (1.0 - tc * tc)
    # d(pre) = d(act) * act'(pre), with d(act) = dc*g, dc*c_prev, dc*i, dh*tanh(c') for i, f, g, o.
    gate = lax.broadcasted_iota(jnp.int32, a.shape[-1:], 0) // f.shape[-1]
    four = lambda v: jnp.concatenate([v] * 4, -1)
    d_act = jnp.where(gate == 3, four(dh * tc), four(dc) * jnp.where(
        gate == 0, four(g), jnp.where(gate == 1, four(c_prev), four(i))))
    dpre = d_act * jnp.where(gate == 2, 1.0 - a * a, a * (1.0 - a))
    return dc * f, dpre.astype(dtype)

  init = (d_last.c.astype(_F32), d_last.h.astype(_F32))
  dx = dw = db = None
  if m.per_step:  # Input and weight gradients inside the loop, from the stacked [x_t, h].
    w_cat = jnp.concatenate([w_in, w_rec], axis=-2).astype(dtype)
    # The input gradient of the stacked [x_t, h] in one map when x needs one, else only h's.
    w_back = m.transpose_weight(w_cat if needs.x else w_rec.astype(dtype))

    steps = res.acts.shape[0]

    def step(carry, inputs):
      dc, dh, dw, db = carry
      t, a, c_prev, dy, x_t = inputs
      dc, dpre = gate_grads(dc, dh, a, c_prev, dy)
      d_in = m.input_grad(dpre, w_back)
      if needs.weights:
        # h_{t-1} read by index: a shifted copy of all the outputs as a scan input would be a
        # copy of them.
        h_prev = jnp.where(t > 0, lax.dynamic_index_in_dim(res.hs, jnp.maximum(t - 1, 0), 0,
                                                           keepdims=False),
                           res.carry.h.astype(dtype))
        dw = dw + m.weight_grad(jnp.concatenate([x_t, h_prev], -1), dpre)
        db = db + _sum_lead(dpre)
      dh = d_in[..., cin:] if needs.x else d_in
      return (dc, dh.astype(_F32), dw, db), (d_in[..., :cin] if needs.x else None)

    init += ((jnp.zeros(w_cat.shape, _F32), jnp.zeros(b.shape, _F32)) if needs.weights
             else (None, None))
    (dc0, dh0, dw, db), dx = lax.scan(
        step, init, (jnp.arange(steps), res.acts, res.c_in, dhs, xc), reverse=True,
        unroll=loop.unroll)
  else:  # The loop yields the gate gradients; input and weight gradients batched after it.
    w_rec_t = m.transpose_weight(w_rec.astype(dtype))

    def step(carry, inputs):
      dc, dh = carry
      dc, dpre = gate_grads(dc, dh, *inputs)
      return (dc, m.input_grad(dpre, w_rec_t).astype(_F32)), dpre

    (dc0, dh0), dpre = lax.scan(step, init, (res.acts, res.c_in, dhs), reverse=True,
                                unroll=loop.unroll)
    if needs.x:
      dx = m.input_grad(dpre, m.transpose_weight(w_in.astype(dtype)))
    if needs.weights:
      h_in = _shift_in(res.carry.h, res.hs)
      dw = m.weight_grad(jnp.concatenate([xc, h_in], -1), dpre)
      db = _sum_lead(dpre)
  weights = None
  if needs.weights:
    weights = LSTMWeights(input_kernel=dw[..., :cin, :].astype(w_in.dtype),
                          recurrent_kernel=dw[..., cin:, :].astype(w_rec.dtype),
                          bias=db.astype(b.dtype))
  grads = LSTMGrads(
      x=None if dx is None else dx.astype(res.x.dtype), weights=weights,
      carry=LSTMCarry(c=dc0.astype(res.carry.c.dtype), h=dh0.astype(res.carry.h.dtype)))
  # custom_vjp takes a plain tuple, one entry per differentiable argument (None: zero).
  return tuple(grads)


lstm_sequence.defvjp(_lstm_fwd, _lstm_bwd, symbolic_zeros=True)


# ----------------------------------------------------------------------------------------------
# GRU: r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r*(hn + b_rec)), h' = (1-z)*n + z*h, where
# [xr, xz, xn] = m(x, w_in) + b and [hr, hz, hn] = m(h, w_rec).


class GRUWeights(NamedTuple):
  """A GRU layer's parameters, gates fused on the last axis in the order r, z, n."""

  input_kernel: Array  # (C, 3F) or (kh, kw, C, 3F)
  recurrent_kernel: Array  # (F, 3F) or (kh, kw, F, 3F)
  bias: Array  # (3F,)
  recurrent_bias: Array  # (F,): of the n gate, inside r * (W_hn h + b_hn)


class GRUResiduals(NamedTuple):
  """What the forward pass keeps for the backward pass."""

  acts: Array  # (T, N, ..., 4F) each step's r, z, n and hn = W_hn h + b_hn, compute dtype
  hs: Array  # (T, N, ..., F) the outputs
  x: Array
  weights: GRUWeights
  h0: Array  # the initial carry


class GRUGrads(NamedTuple):
  """Cotangents of gru_sequence's differentiable arguments, in the order of its signature."""

  x: Array
  weights: GRUWeights
  h0: Array


def _gru_forward(loop: Loop, x, weights: GRUWeights, h0, save: bool):
  m, dtype = loop.m, loop.dtype
  w_in, w_rec, b, b_rec = weights
  w = w_rec.astype(dtype)
  if m.per_step:
    xs, w_x = x.astype(dtype), w_in.astype(dtype)
    project = lambda x_t: m(x_t, w_x)
  else:  # The input projection of every step at once, before the loop.
    xs, project = m(x.astype(dtype), w_in.astype(dtype)), lambda xg_t: xg_t

  def step(h, x_t):
    xr, xz, xn = jnp.split(project(x_t).astype(_F32) + b.astype(_F32), 3, axis=-1)
    hr, hz, hn = jnp.split(m(h, w).astype(_F32), 3, axis=-1)
    hn = hn + b_rec.astype(_F32)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h_new = (n + z * (h.astype(_F32) - n)).astype(dtype)
    saved = jnp.concatenate([r, z, n, hn], -1).astype(dtype) if save else None
    return h_new, (h_new, saved)

  h, (hs, saved) = lax.scan(step, h0.astype(dtype), xs, unroll=loop.unroll)
  return hs, h, saved


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def gru_sequence(loop: Loop, x, weights: GRUWeights, h0):
  """GRU over time: x (T, N, ..., C), h0 (N, ..., F) -> (hs (T, N, ..., F), final h).

  The math: reference.gru_reference (time-major here)."""
  hs, h, _ = _gru_forward(loop, x, weights, h0, save=False)
  return hs, h


def _gru_fwd(loop, x, weights, h0):
  hs, h, acts = _gru_forward(loop, x, weights, h0, save=True)
  return (hs, h), GRUResiduals(acts, hs, x, weights, h0)


def _gru_bwd(loop: Loop, res: GRUResiduals, cts):
  m, dtype = loop.m, loop.dtype
  dhs, dh_last = cts
  w_in, w_rec, b, b_rec = res.weights
  xc, h_in = res.x.astype(dtype), _shift_in(res.h0, res.hs)
  w_in_t = m.transpose_weight(w_in.astype(dtype))
  w_rec_t = m.transpose_weight(w_rec.astype(dtype))
  f = b_rec.shape[-1]

  def gate_grads(dh, a, h_prev, dy):
    """-> (dh through z, gradients of the input pre-activations, of the recurrent ones)."""
    r, z, n, hn = jnp.split(a.astype(_F32), 4, axis=-1)
    dh = dh + dy.astype(_F32)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dr = dn * hn * r * (1.0 - r)
    dz = dh * (h_prev.astype(_F32) - n) * z * (1.0 - z)
    # The recurrent part sees dn scaled by r (n = tanh(xn + r * hn)).
    return (dh * z, jnp.concatenate([dr, dz, dn], -1).astype(dtype),
            jnp.concatenate([dr, dz, dn * r], -1).astype(dtype))

  if m.per_step:  # Input and weight gradients inside the loop.
    def step(carry, inputs):
      dh, dw_in, dw_rec, db, db_rec = carry
      a, h_prev, dy, x_t = inputs
      dh, dxg, dhh = gate_grads(dh, a, h_prev, dy)
      dh = dh + m.input_grad(dhh, w_rec_t).astype(_F32)
      carry = (dh, dw_in + m.weight_grad(x_t, dxg), dw_rec + m.weight_grad(h_prev, dhh),
               db + _sum_lead(dxg), db_rec + _sum_lead(dhh)[2 * f:])
      return carry, m.input_grad(dxg, w_in_t)

    init = (dh_last.astype(_F32), jnp.zeros(w_in.shape, _F32), jnp.zeros(w_rec.shape, _F32),
            jnp.zeros(b.shape, _F32), jnp.zeros(b_rec.shape, _F32))
    (dh0, dw_in, dw_rec, db, db_rec), dx = lax.scan(step, init, (res.acts, h_in, dhs, xc),
                                                    reverse=True, unroll=loop.unroll)
  else:  # The loop yields the gate gradients; input and weight gradients batched after it.
    def step(dh, inputs):
      dh, dxg, dhh = gate_grads(dh, *inputs)
      return dh + m.input_grad(dhh, w_rec_t).astype(_F32), (dxg, dhh)

    dh0, (dxg, dhh) = lax.scan(step, dh_last.astype(_F32), (res.acts, h_in, dhs), reverse=True,
                               unroll=loop.unroll)
    dx = m.input_grad(dxg, w_in_t)
    dw_in, dw_rec = m.weight_grad(xc, dxg), m.weight_grad(h_in, dhh)
    db, db_rec = _sum_lead(dxg), _sum_lead(dhh[..., 2 * f:])
  grads = GRUGrads(
      x=dx.astype(res.x.dtype),
      weights=GRUWeights(input_kernel=dw_in.astype(w_in.dtype),
                         recurrent_kernel=dw_rec.astype(w_rec.dtype), bias=db.astype(b.dtype),
                         recurrent_bias=db_rec.astype(b_rec.dtype)),
      h0=dh0.astype(res.h0.dtype))
  return tuple(grads)  # custom_vjp takes a plain tuple, one entry per differentiable argument


gru_sequence.defvjp(_gru_fwd, _gru_bwd)
