"""The PredRNN family's fast stack (predrnn_scan.py, a hand-written backward pass) against its
specification (predrnn_reference.py, plain steps differentiated by autodiff, the implementation
it replaced): predictions, memory increments, and the gradients of every weight and of the frames,
with scheduled sampling (random per-example flags), PredRNN-V2's increments under a loss, the
gradient highway, three layers, and no forecast step at all.

Tolerances (float32 both sides, pinned to 'highest' precision): 1e-5 absolute on values; on
gradients 1e-5 of the largest magnitude of each array (they differ only in summation order).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax.models import predrnn
from dcrn_jax.models.predrnn_reference import predrnn_reference
from dcrn_jax.models.predrnn_scan import Spec, predrnn_sequence

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

B, S, P, F = 2, 6, 3, 4


def _weights(cell, layers, key=0):
  """Random weights of a stack (non-zero biases, so that every bias is checked)."""
  make = predrnn.STLSTMParams if cell == "st_lstm" else predrnn.CausalLSTMParams
  keys = iter(jax.random.split(jax.random.key(key), 16))
  init = lambda module: module.init(next(keys))["params"]
  w = {"cells": tuple(init(make(F, 3, P if i == 0 else F)) for i in range(layers)),
       "ghu": init(predrnn.GHUParams(F, 3)) if cell == "causal_lstm" and layers > 1 else None,
       "head": {"kernel": jax.random.normal(next(keys), (F, P)) * 0.5,
                "bias": jax.random.normal(next(keys), (P,)) * 0.1}}
  leaves, tree = jax.tree.flatten(w)
  noise = jax.random.split(jax.random.key(key + 1), len(leaves))
  return tree.unflatten([v + 0.1 * jax.random.normal(k, v.shape) for v, k in zip(leaves, noise)])


def _check(cell, layers, steps, known, deltas):
  spec = Spec(cell, 3, known, deltas=deltas)
  w = _weights(cell, layers)
  frames = jax.random.uniform(jax.random.key(1), (steps, B, S, S, P))
  use_true = jnp.concatenate([jnp.ones((known, B)), jax.random.bernoulli(
      jax.random.key(2), 0.5, (steps - known, B)).astype(jnp.float32)], 0)
  probe = jax.random.normal(jax.random.key(3), (steps, B, S, S, P))
  dprobe = jax.random.normal(jax.random.key(4), (2, steps, layers, B, S, S, F))

  def loss(run, w, frames):
    out, d = run(spec, w, frames, use_true)
    total = jnp.sum(out * probe)
    if deltas:  # A nonlinear term, as PredRNN-V2's decoupling loss is.
      total = total + jnp.sum(jnp.tanh(d[0]) * dprobe[0] + d[1] * d[1] * dprobe[1])
    return total, (out, d)

  with jax.default_matmul_precision("highest"):
    (_, got), g_got = jax.jit(jax.value_and_grad(
        lambda w, f: loss(predrnn_sequence, w, f), (0, 1), has_aux=True))(w, frames)
    (_, want), g_want = jax.jit(jax.value_and_grad(
        lambda w, f: loss(predrnn_reference, w, f), (0, 1), has_aux=True))(w, frames)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)
  assert (got[1] is None) == (not deltas)
  paths = jax.tree_util.tree_leaves_with_path(g_want)
  assert len(paths) == len(jax.tree.leaves(g_got))
  for (path, b), a in zip(paths, jax.tree.leaves(g_got)):
    b = np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5 * np.abs(b).max(),
                               err_msg=jax.tree_util.keystr(path))


# Each case is two compiles (~6-15 s on the shared CPU): two run by default, the rest with -m slow.
@pytest.mark.parametrize("cell,layers,steps,known,deltas", [
    # PredRNN-V2: reverse scheduled sampling, increments in a loss, three layers.
    ("st_lstm", 3, 5, 1, True),
    ("causal_lstm", 2, 5, 2, False),  # PredRNN++ with its gradient highway.
    # PredRNN: scheduled sampling after the known steps.
    pytest.param("st_lstm", 2, 5, 2, False, marks=pytest.mark.slow),
    # Every step reads the true frame: one loop only.
    pytest.param("st_lstm", 2, 3, 3, False, marks=pytest.mark.slow),
])
def test_fast_stack_equals_its_autodiff_specification(cell, layers, steps, known, deltas):
  _check(cell, layers, steps, known, deltas)


@pytest.mark.slow  # The three-layer causal stack's compiles (~15 s on the shared CPU).
def test_fast_causal_stack_of_three_layers_equals_its_specification():
  _check("causal_lstm", 3, 4, 2, False)


@pytest.mark.slow
def test_model_trains_through_the_fast_stack_with_the_same_gradients_as_before():
  """The model's train-step gradient (loss with PredRNN-V2's decoupling term sown) is the same
  through the fast stack as through the reference, which the model ran before."""
  model = predrnn.PredRNN(output_frames=3, features=(F, F), decouple_beta=0.5)
  seq = jax.random.uniform(jax.random.key(5), (B, 6, S, S, P))
  params = model.init(jax.random.key(6), seq[:, :3])["params"]
  forcing = jax.random.bernoulli(jax.random.key(7), 0.5, (B, 4))

  def loss(p):
    out, sown = model.apply({"params": p}, seq[:, :3], targets=seq[:, 3:],
                            teacher_forcing=forcing, train=True, mutable=["losses"])
    return jnp.mean((out - seq[:, 1:]) ** 2) + sown["losses"]["decoupling"][0]

  with jax.default_matmul_precision("highest"):
    fast = jax.jit(jax.value_and_grad(loss))(params)
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(predrnn.predrnn_scan, "predrnn_sequence", predrnn_reference)
      slow = jax.jit(jax.value_and_grad(loss))(params)
  assert float(fast[0]) == pytest.approx(float(slow[0]), rel=1e-6)
  for a, b in zip(jax.tree.leaves(fast[1]), jax.tree.leaves(slow[1])):
    b = np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5 * np.abs(b).max())
