"""The PredRNN family's stack over a whole sequence, with a hand-written backward pass
(`jax.custom_vjp`): what makes its train step fast on XLA:CPU.

The specification is `predrnn_reference.py` (the same stack as plain steps in a `lax.scan`,
differentiated by autodiff, which was the model until it was replaced by this); tests check
outputs and every gradient against it, and the model against PyTorch written from the papers.

    predrnn_sequence(spec, weights, frames (T, B, H, W, P), use_true (T, B))
        -> (predictions (T, B, H, W, P), deltas)

Step t reads x_t = u_t frames_t + (1 - u_t) prediction_{t-1} (u = use_true) and predicts the
next frame; `deltas` is None, or with `spec.deltas` each ST-LSTM cell's memory increments
(i . g, i' . g'), each (T, L, B, H, W, F), from which PredRNN-V2's decoupling loss is computed
outside (batched over all steps; its gradient comes back in through their cotangents).

Why by hand: XLA:CPU runs autodiff's transposed convolutions inside a loop many times slower
than the same convolution outside one (DESIGN.md), and the cells are all convolutions. Here:
  - the first `spec.known` steps always read the true frame, so the bottom layer's input
    convolution of those frames is one batched convolution before the loop; the other steps
    convolve their mixed input x_t in the loop (each frame convolved once);
  - the forward loop saves each cell's gates and inputs (predrnn_cells.py), so the backward
    loop recomputes nothing; its convolutions are forward-form ones with transposed kernels;
  - no weight gradient is taken in a loop: the backward loop yields each step's gate
    cotangents, and every weight gradient is then one op over all steps (on CPU matmuls over
    shifted inputs, `rnn_maps.Conv2DMap.weight_grad`).
The loop is `lax.scan` (compile time does not depend on T), in two pieces: the `known` steps,
then the steps that may read the model's own prediction.

`weights`: {"cells": (one dict per layer, predrnn.STLSTMParams' or CausalLSTMParams' names),
"ghu": GHUParams' dict or None, "head": {"kernel": (F, P), "bias": (P,)}}. Precision: convolutions
in `spec.dtype`, gate arithmetic, carries, and weight gradients in float32.
"""

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from dcrn_jax.models import predrnn_cells as cells_lib
from dcrn_jax.models.rnn_scan import Needs, _dense, _unwrap

_F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class Spec:
  """The static settings of a stack (not differentiated)."""

  cell: str  # 'st_lstm' (PredRNN) or 'causal_lstm' (PredRNN++)
  kernel_size: int
  known: int  # leading steps that always read the true frame (1 <= known <= T)
  deltas: bool = False  # also return the ST-LSTM memory increments (PredRNN-V2)
  dtype: Any = _F32  # compute dtype of the convolutions
  unroll: int = 1  # lax.scan's unroll

  @property
  def ops(self):
    return cells_lib.Ops(self.kernel_size, self.dtype)

  @property
  def cell_fns(self):
    return cells_lib.CELLS[self.cell]


def _forward_step(spec, w, carry, gx0, x0, save):
  """One step of the whole stack: carry (cs, hs, m, z, prediction) -> (carry, outputs)."""
  ops, cell = spec.ops, spec.cell_fns
  cs, hs, m, z, _ = carry
  new_c, new_h, saved, deltas, ghu_saved = [], [], [], [], None
  gx, x = gx0, x0
  for layer, p in enumerate(w["cells"]):
    if layer > 0:
      x = z if (layer == 1 and w["ghu"] is not None) else new_h[-1]
      gx = ops.conv(x, p["input_kernel"]) + p["bias"]
    (c, h, m), residuals, delta = cell.forward(ops, p, gx, cs[layer], hs[layer], m, x)
    new_c.append(c)
    new_h.append(h)
    saved.append(residuals)
    deltas.append(delta)
    if layer == 0 and w["ghu"] is not None:
      z, ghu_saved = cells_lib.ghu_forward(ops, w["ghu"], h, z)
  prediction = ops.dense(new_h[-1], w["head"]["kernel"]) + w["head"]["bias"]
  out = {"prediction": prediction}
  if spec.deltas:
    out["deltas"] = tuple(jnp.stack([d[k] for d in deltas]) for k in range(2))
  if save:
    out.update(saved=tuple(saved), ghu=ghu_saved, top=new_h[-1])
  return (tuple(new_c), tuple(new_h), m, z, prediction), out


def _forward(spec: Spec, w, frames, use_true, save: bool):
  """-> (predictions, deltas, [segment outputs]): the `known` steps, then the others."""
  ops, k = spec.ops, spec.known
  p0 = w["cells"][0]
  feats = p0["hidden_kernel"].shape[2]
  zeros = jnp.zeros(frames.shape[1:-1] + (feats,), _F32)
  layers = len(w["cells"])
  carry = ((zeros,) * layers, (zeros,) * layers, zeros,
           zeros if w["ghu"] is not None else None, jnp.zeros(frames.shape[1:], _F32))
  gx_true = ops.conv(frames[:k], p0["input_kernel"]) + p0["bias"]

  def known_step(carry, xs):
    return _forward_step(spec, w, carry, *xs, save)

  def own_step(carry, xs):
    frame, u = xs
    u = u[:, None, None, None]
    x0 = u * frame + (1.0 - u) * carry[-1]
    return _forward_step(spec, w, carry, ops.conv(x0, p0["input_kernel"]) + p0["bias"], x0,
                         save)

  carry, first = lax.scan(known_step, carry, (gx_true, frames[:k]), unroll=spec.unroll)
  segments = [first]
  if frames.shape[0] > k:
    _, rest = lax.scan(own_step, carry, (frames[k:], use_true[k:]), unroll=spec.unroll)
    segments.append(rest)
  joined = lambda name: jax.tree.map(lambda *a: jnp.concatenate(a, 0),
                                     *[s[name] for s in segments])
  return joined("prediction"), (joined("deltas") if spec.deltas else None), segments


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def predrnn_sequence(spec: Spec, weights, frames, use_true):
  """The stack over frames (T, B, H, W, P) with use_true (T, B) -> (predictions, deltas) (module
  docstring)."""
  predictions, deltas, _ = _forward(spec, weights, frames, use_true, save=False)
  return predictions, deltas


def _fwd(spec, weights, frames, use_true):
  (weights, w_perturbed), (frames, f_perturbed) = _unwrap(weights), _unwrap(frames)
  use_true, u_perturbed = _unwrap(use_true)
  if u_perturbed:
    raise NotImplementedError("predrnn_sequence has no gradient for use_true (0/1 flags)")
  predictions, deltas, segments = _forward(spec, weights, frames, use_true, save=True)
  saved = [{k: s[k] for k in ("saved", "ghu", "top")} for s in segments]
  return (predictions, deltas), (saved, weights, use_true, Needs(f_perturbed, w_perturbed))


def _backward_step(spec, w, wt, carry, xs, feedback: bool, need_frames: bool):
  """One reverse step: carry (dcs, dhs, dm, dz, dprev) -> (carry, gate cotangents)."""
  ops, cell = spec.ops, spec.cell_fns
  dcs, dhs, dm, dz, dprev = carry
  saved, dpred, ddelta, u = xs
  dpred = dpred + dprev
  layers = len(w["cells"])
  dcs, dhs, grads = list(dcs), list(dhs), [None] * layers
  dx, ghu_grads = ops.dense(dpred, w["head"]["kernel"].T), None
  for layer in reversed(range(layers)):
    if layer == 0 and w["ghu"] is not None:
      dh_z, dz, ghu_grads = cells_lib.ghu_backward(ops, wt["ghu"], saved["ghu"], dx + dz)
      dx = dh_z
    delta = None if ddelta is None else (ddelta[0][layer], ddelta[1][layer])
    need_dx = layer > 0 or feedback or need_frames
    dx, dhs[layer], dcs[layer], dm, grads[layer] = cell.backward(
        ops, w["cells"][layer], wt["cells"][layer], saved["saved"][layer], dhs[layer] + dx,
        dcs[layer], dm, delta, need_dx)
  out = {"cells": tuple(grads), "ghu": ghu_grads, "prediction": dpred}
  if feedback:
    u = u[:, None, None, None]
    dprev = (1.0 - u) * dx
    if need_frames:
      out["frames"] = u * dx
  else:
    dprev = jnp.zeros_like(dprev)
    if need_frames:
      out["frames"] = dx
  return (tuple(dcs), tuple(dhs), dm, dz, dprev), out


def _weight_grads(spec, w, saved, grads):
  """Every parameter's gradient from one segment's stacked residuals and gate cotangents."""
  ops, cell = spec.ops, spec.cell_fns
  out = {"cells": tuple(cell.weight_grads(ops, p, r, g)
                        for p, r, g in zip(w["cells"], saved["saved"], grads["cells"])),
         "ghu": None if w["ghu"] is None else cells_lib.ghu_weight_grads(
             ops, w["ghu"], saved["ghu"], grads["ghu"]),
         "head": {"kernel": ops.dense_grad(saved["top"], grads["prediction"]),
                  "bias": cells_lib.sum_lead(grads["prediction"])}}
  out["head"] = {k: v.astype(w["head"][k].dtype) for k, v in out["head"].items()}
  return out


def _bwd(spec, res, cts):
  saved, w, use_true, needs = res
  ops, cell, k = spec.ops, spec.cell_fns, spec.known
  dpreds = _dense(cts[0])
  ddeltas = None if cts[1] is None else jax.tree.map(
      _dense, cts[1], is_leaf=lambda v: isinstance(v, SymbolicZero))
  wt = {"cells": tuple(cell.transposed(ops, p) for p in w["cells"]),
        "ghu": None if w["ghu"] is None else cells_lib.ghu_transposed(ops, w["ghu"])}
  zeros = jnp.zeros_like(saved[0]["top"][0])
  layers = len(w["cells"])
  carry = ((zeros,) * layers, (zeros,) * layers, zeros,
           zeros if w["ghu"] is not None else None, jnp.zeros(dpreds.shape[1:], _F32))
  span = [slice(0, k), slice(k, None)]
  outs = [None] * len(saved)
  for i in reversed(range(len(saved))):  # The steps after `known` first.
    feedback = i == 1
    step = partial(_backward_step, spec, w, wt, feedback=feedback, need_frames=needs.x)
    part = lambda a, i=i: None if a is None else jax.tree.map(lambda v: v[span[i]], a)
    xs = (saved[i], dpreds[span[i]], part(ddeltas), use_true[span[i]])
    carry, outs[i] = lax.scan(step, carry, xs, reverse=True, unroll=spec.unroll)
  dweights = None
  if needs.weights:
    parts = [_weight_grads(spec, w, s, o) for s, o in zip(saved, outs)]
    dweights = jax.tree.map(lambda *a: sum(a[1:], a[0]), *parts)
  dframes = None
  if needs.x:
    dframes = jnp.concatenate([o["frames"] for o in outs], 0)
  return dweights, dframes, None


predrnn_sequence.defvjp(_fwd, _bwd, symbolic_zeros=True)
