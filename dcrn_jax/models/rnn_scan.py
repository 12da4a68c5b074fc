"""Whole-sequence LSTM and GRU recurrences with a hand-written backward pass (`jax.custom_vjp`).

Both take the input projections of every step already computed (`xg`, one batched op before the
loop) and run only the recurrent part in `lax.scan`, time-major:

  xg (T, N, ..., G) -> hs (T, N, ..., F)   with G = 4F (LSTM) or 3F (GRU), `...` empty for dense
                                           layers and (H, W) for convolutional ones.

Forward: one scan; for training it also saves each step's gate activations, so the backward loop
recomputes no matmul or convolution. Backward: one reverse scan whose only heavy op is the
input-gradient of the recurrent map in forward form (`m.input_grad`); the gradient of every step's
gate pre-activations comes out of the loop and the recurrent weight gradient is then one batched
op over all steps (`m.weight_grad`). The gate pre-activation gradients are also the gradient of
`xg`, so the input projection's weight gradient is one batched op as well (in `rnn_maps.project`).

Precision: matmuls/convolutions and saved activations use xg's dtype (the compute dtype, e.g.
bfloat16); gate arithmetic and the LSTM cell state are float32; weight gradients accumulate in
float32. Gate orders: LSTM i, f, g, o; GRU r, z, n (as PyTorch and Flax's OptimizedLSTMCell /
GRUCell).
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32


def _shift_in(first, rest):
  """[first, rest[0], ..., rest[T-2]]: each step's incoming state, from the states it produced."""
  return jnp.concatenate([first[None].astype(rest.dtype), rest[:-1]], axis=0)


# ----------------------------------------------------------------------------------------------
# LSTM: c' = f*c + i*g, h' = o*tanh(c'); carry (c, h) with c float32.


def _sigmoid(x):
  # The same function as jax.nn.sigmoid; XLA:CPU computes tanh with a fast polynomial but
  # lowers the logistic to exp and a division, ~2x slower on the gate tensors.
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


def _by_gate(x, gates):
  """(..., G*F) -> (..., G, F), and an index of the gate along axis -2 to select with.

  The gate arithmetic is written on the whole fused array with `where` on this index, not on
  split-and-concatenated pieces: XLA:CPU then emits one loop over all gates per step instead of
  one per gate plus a concatenation, which matters when a step's maps are small."""
  x = x.reshape(x.shape[:-1] + (gates, x.shape[-1] // gates))
  return x, lax.broadcasted_iota(jnp.int32, (gates, 1), 0)


def _lstm_forward(m, unroll, xg, b, w, c0, h0, save):
  w = w.astype(xg.dtype)

  def step(carry, xg_t):
    c, h = carry
    pre, gate = _by_gate(xg_t.astype(_F32) + b.astype(_F32) + m(h, w).astype(_F32), 4)
    acts = jnp.where(gate == 2, jnp.tanh(pre), _sigmoid(pre))  # i, f, g, o
    i, f, g, o = acts[..., 0, :], acts[..., 1, :], acts[..., 2, :], acts[..., 3, :]
    c_new = f * c + i * g
    h_new = (o * jnp.tanh(c_new)).astype(xg.dtype)
    # The incoming c (not the new one) is saved: the backward step recomputes c' = f*c + i*g
    # exactly, and no shifted copy of the cell states is needed.
    saved = (acts.reshape(xg_t.shape).astype(xg.dtype), c) if save else None
    return (c_new, h_new), (h_new, saved)

  carry, (hs, saved) = lax.scan(step, (c0.astype(_F32), h0.astype(xg.dtype)), xg, unroll=unroll)
  return hs, carry, saved


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def lstm_sequence(m, unroll, xg, b, w, c0, h0):
  """LSTM over time. m: the recurrent map (rnn_maps); unroll: lax.scan's unroll.

  xg (T, N, ..., 4F): input projections; b (4F,): bias; w: recurrent kernel (F, 4F) or
  (kh, kw, F, 4F); c0, h0 (N, ..., F). Returns (hs (T, N, ..., F) in xg's dtype, (c_T, h_T)).
  """
  hs, carry, _ = _lstm_forward(m, unroll, xg, b, w, c0, h0, save=False)
  return hs, carry


def _lstm_fwd(m, unroll, xg, b, w, c0, h0):
  hs, carry, (acts, c_in) = _lstm_forward(m, unroll, xg, b, w, c0, h0, save=True)
  return (hs, carry), (acts, c_in, hs, b, w, c0, h0)


def _lstm_bwd(m, unroll, res, cts):
  acts, c_in, hs, b, w, c0, h0 = res
  dhs, (dc_last, dh_last) = cts
  dtype = hs.dtype
  w_t = m.transpose_weight(w.astype(dtype))

  def step(carry, inputs):
    dc, dh = carry
    a, c_prev, dy = inputs
    a, gate = _by_gate(a.astype(_F32), 4)
    i, f, g, o = a[..., 0, :], a[..., 1, :], a[..., 2, :], a[..., 3, :]
    tc = jnp.tanh(f * c_prev + i * g)
    dh = dh + dy.astype(_F32)
    dc = dc + dh * o * (1.0 - tc * tc)
    # d(pre) = d(act) * act'(pre), with d(act) = dc*g, dc*c_prev, dc*i, dh*tanh(c') for i, f, g, o.
    e = lambda v: jnp.expand_dims(v, -2)
    d_act = jnp.where(gate == 3, e(dh * tc), e(dc) * jnp.where(
        gate == 0, e(g), jnp.where(gate == 1, e(c_prev), e(i))))
    dpre = (d_act * jnp.where(gate == 2, 1.0 - a * a, a * (1.0 - a)))
    dpre = dpre.reshape(dy.shape[:-1] + (-1,)).astype(dtype)
    return (dc * f, m.input_grad(dpre, w_t).astype(_F32)), dpre

  init = (dc_last.astype(_F32), dh_last.astype(_F32))
  (dc0, dh0), dxg = lax.scan(step, init, (acts, c_in, dhs), reverse=True, unroll=unroll)
  dw = m.weight_grad(_shift_in(h0, hs), dxg)
  db = jnp.sum(dxg.astype(_F32), axis=tuple(range(dxg.ndim - 1)))
  return (dxg, db.astype(b.dtype), dw.astype(w.dtype), dc0.astype(c0.dtype),
          dh0.astype(h0.dtype))


lstm_sequence.defvjp(_lstm_fwd, _lstm_bwd)


# ----------------------------------------------------------------------------------------------
# GRU: r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r*(hn + b)), h' = (1-z)*n + z*h, where
# [hr, hz, hn] = m(h, w) and b is the recurrent bias of the n gate.


def _gru_forward(m, unroll, xg, b, w, b_rec, h0, save):
  w = w.astype(xg.dtype)

  def step(h, xg_t):
    xr, xz, xn = jnp.split(xg_t.astype(_F32) + b.astype(_F32), 3, axis=-1)
    hr, hz, hn = jnp.split(m(h, w).astype(_F32), 3, axis=-1)
    hn = hn + b_rec.astype(_F32)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h_new = (n + z * (h.astype(_F32) - n)).astype(xg.dtype)
    saved = jnp.concatenate([r, z, n, hn], -1).astype(xg.dtype) if save else None
    return h_new, (h_new, saved)

  h, (hs, saved) = lax.scan(step, h0.astype(xg.dtype), xg, unroll=unroll)
  return hs, h, saved


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def gru_sequence(m, unroll, xg, b, w, b_rec, h0):
  """GRU over time. m: the recurrent map (rnn_maps); unroll: lax.scan's unroll.

  xg (T, N, ..., 3F): input projections; b (3F,): their bias; w: recurrent kernel (F, 3F) or
  (kh, kw, F, 3F); b_rec (F,): recurrent bias of the n gate; h0 (N, ..., F).
  Returns (hs (T, N, ..., F) in xg's dtype, h_T).
  """
  hs, h, _ = _gru_forward(m, unroll, xg, b, w, b_rec, h0, save=False)
  return hs, h


def _gru_fwd(m, unroll, xg, b, w, b_rec, h0):
  hs, h, acts = _gru_forward(m, unroll, xg, b, w, b_rec, h0, save=True)
  return (hs, h), (acts, hs, b, w, b_rec, h0)


def _gru_bwd(m, unroll, res, cts):
  acts, hs, b, w, b_rec, h0 = res
  dhs, dh_last = cts
  dtype = hs.dtype
  w_t = m.transpose_weight(w.astype(dtype))
  h_in = _shift_in(h0, hs)

  def step(dh, inputs):
    a, h_prev, dy = inputs
    r, z, n, hn = jnp.split(a.astype(_F32), 4, axis=-1)
    dh = dh + dy.astype(_F32)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dr = dn * hn * r * (1.0 - r)
    dz = dh * (h_prev.astype(_F32) - n) * z * (1.0 - z)
    dxg = jnp.concatenate([dr, dz, dn], -1).astype(dtype)
    # The recurrent part sees dn scaled by r (n = tanh(xn + r * hn)).
    dhh = jnp.concatenate([dr, dz, dn * r], -1).astype(dtype)
    dh_prev = dh * z + m.input_grad(dhh, w_t).astype(_F32)
    return dh_prev, (dxg, dhh)

  dh0, (dxg, dhh) = lax.scan(step, dh_last.astype(_F32), (acts, h_in, dhs), reverse=True,
                             unroll=unroll)
  dw = m.weight_grad(h_in, dhh)
  lead = tuple(range(dxg.ndim - 1))
  db = jnp.sum(dxg.astype(_F32), axis=lead)
  db_rec = jnp.sum(dhh[..., 2 * b_rec.shape[-1]:].astype(_F32), axis=lead)
  return (dxg, db.astype(b.dtype), dw.astype(w.dtype), db_rec.astype(b_rec.dtype),
          dh0.astype(h0.dtype))


gru_sequence.defvjp(_gru_fwd, _gru_bwd)
