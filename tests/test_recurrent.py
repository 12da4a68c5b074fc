"""The fast recurrent layers against references written by others (Flax cells under nn.RNN, PyTorch
nn.GRU / nn.LSTM) with the same weights mapped over: outputs, final carries and gradients (with
respect to inputs and every parameter), float32. Then the options: reverse, initial carry,
remat_chunk, unroll, Bidirectional, Stack, bfloat16, initialisation, and a compiled size that does
not depend on the number of steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax.models import GRU, LSTM, ConvGRU, ConvLSTM
from dcrn_jax.models.recurrent import Bidirectional, Stack
from dcrn_jax.models.rnn_maps import Conv2DMap, DenseMap

# float32 summation order differs between implementations: errors are relative to each array's
# largest magnitude.
TOL = 2e-5
B, T, HW, C, F = 2, 5, 6, 3, 4


def _close(a, b, tol=TOL):
  a, b = np.asarray(a), np.asarray(b)
  np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))


def _random_params(model, x, seed=2):
  """Random values (biases included, which init leaves at zero) for every parameter of `model`.
  Only the shapes come from `init` (through eval_shape: nothing is compiled)."""
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree.flatten(jax.eval_shape(model.init, jax.random.key(1), x)["params"])
  return treedef.unflatten([jnp.asarray(0.4 * rng.standard_normal(x.shape), jnp.float32)
                            for x in leaves])


def _normal(shape, seed=0):
  # numpy, not jax.random: each new shape would cost a compilation.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _gates(w, order):
  """Reorders the fused gate blocks on the last axis: order[i] is the source block of gate i."""
  blocks = jnp.split(w, 4, axis=-1)
  return jnp.concatenate([blocks[i] for i in order], -1)


def _loss(out, key):
  """A scalar that depends on every output step and on the final carry, with distinct weights."""
  leaves = jax.tree.leaves(out)
  weights = [jax.random.normal(k, x.shape) for k, x in zip(jax.random.split(key, len(leaves)),
                                                              leaves)]
  return sum(jnp.sum(w * x) for w, x in zip(weights, leaves))


def _outputs_and_grads(model, params, x):
  """(model outputs, (d loss / d params, d loss / d x)), in one compiled call."""
  def f(p, x):
    out = model.apply({"params": p}, x)
    return _loss(out, jax.random.key(7)), out
  (_, out), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(params, x)
  return out, grads



# ---------------------------------------------------------------------------------------------
# Flax ConvLSTMCell (gates i, g, f, o; a fixed +1 on f; two biases) under nn.RNN.


def _flax_convlstm_to_ours(p):
  order = (0, 2, 1, 3)  # ours i, f, g, o from Flax's i, g, f, o
  bias = _gates(p["ih"]["bias"] + p["hh"]["bias"], order)
  bias = bias.at[F:2 * F].add(1.0)  # Flax adds 1 to the forget pre-activation
  return {"input_kernel": _gates(p["ih"]["kernel"], order),
          "recurrent_kernel": _gates(p["hh"]["kernel"], order), "bias": bias}


@pytest.mark.parametrize("kernel", [(3, 3), (2, 3)])
def test_convlstm_equals_flax_convlstmcell_outputs_carry_and_gradients(kernel):
  x = _normal((B, T, HW, HW, C))
  ref = nn.RNN(nn.ConvLSTMCell(F, kernel), return_carry=True)
  ref_params = _random_params(ref, x)
  ours = ConvLSTM(F, kernel, return_carry=True)
  params = _flax_convlstm_to_ours(ref_params["cell"])

  ((c_ref, h_ref), y_ref), (g_ref, gx_ref) = _outputs_and_grads(ref, ref_params, x)
  ((c, h), y), (g, gx) = _outputs_and_grads(ours, params, x)
  _close(y, y_ref)
  _close(c, c_ref)
  _close(h, h_ref)
  _close(gx, gx_ref)
  g_ref = g_ref["cell"]
  _close(g["input_kernel"], _gates(g_ref["ih"]["kernel"], (0, 2, 1, 3)))
  _close(g["recurrent_kernel"], _gates(g_ref["hh"]["kernel"], (0, 2, 1, 3)))
  _close(g["bias"], _gates(g_ref["ih"]["bias"], (0, 2, 1, 3)))
  _close(g_ref["ih"]["bias"], g_ref["hh"]["bias"])  # the two Flax biases act as one


# ---------------------------------------------------------------------------------------------
# Flax OptimizedLSTMCell (ii.. input kernels, hi.. hidden kernels with biases) and GRUCell.


def _flax_lstm_to_ours(p):
  g = "ifgo"
  return {"input_kernel": jnp.concatenate([p["i" + k]["kernel"] for k in g], -1),
          "recurrent_kernel": jnp.concatenate([p["h" + k]["kernel"] for k in g], -1),
          "bias": jnp.concatenate([p["h" + k]["bias"] for k in g], -1)}


def _flax_gru_to_ours(p):
  g = "rzn"
  return {"input_kernel": jnp.concatenate([p["i" + k]["kernel"] for k in g], -1),
          "recurrent_kernel": jnp.concatenate([p["h" + k]["kernel"] for k in g], -1),
          "bias": jnp.concatenate([p["i" + k]["bias"] for k in g], -1),
          "recurrent_bias": p["hn"]["bias"]}


@pytest.mark.parametrize("cell,layer,to_ours", [
    (nn.OptimizedLSTMCell, LSTM, _flax_lstm_to_ours), (nn.GRUCell, GRU, _flax_gru_to_ours)])
def test_dense_layers_equal_flax_cells_outputs_carry_and_gradients(cell, layer, to_ours):
  x = _normal((3, 7, 6))
  ref = nn.RNN(cell(5), return_carry=True)
  ref_params = _random_params(ref, x)
  ours = layer(5, return_carry=True)
  params = to_ours(ref_params["cell"])

  (carry_ref, y_ref), (g_ref, gx_ref) = _outputs_and_grads(ref, ref_params, x)
  (carry, y), (g, gx) = _outputs_and_grads(ours, params, x)
  _close(y, y_ref)
  jax.tree.map(_close, carry, carry_ref)
  _close(gx, gx_ref)
  jax.tree.map(_close, g, to_ours(g_ref["cell"]))


def test_gru_recurrent_biases_of_r_and_z_act_like_input_biases():
  # Flax's GRUCell has no hidden r/z biases; ours folds them into `bias`. Gradients of the
  # n-gate's recurrent bias must differ from its input bias (it sits inside r * (...)).
  x = _normal((3, 7, 6))
  ours = GRU(5)
  params = _random_params(ours, x)
  _, (g, _) = _outputs_and_grads(ours, params, x)
  assert not np.allclose(g["recurrent_bias"], g["bias"][10:], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# PyTorch nn.LSTM / nn.GRU (test-only dependency).


def _torch_run(module, x, loss_weights):
  torch = pytest.importorskip("torch")
  xt = torch.tensor(np.asarray(x), requires_grad=True)
  y, _ = module(xt)
  (y * torch.tensor(np.asarray(loss_weights))).sum().backward()
  grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
  return y.detach().numpy(), xt.grad.numpy(), grads


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dense_layers_equal_pytorch_with_mapped_weights(kind):
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  d, h = 6, 5
  module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(d, h, batch_first=True)
  p = {k: jnp.asarray(v.detach().numpy()) for k, v in module.named_parameters()}
  if kind == "lstm":
    ours = LSTM(h)
    params = {"input_kernel": p["weight_ih_l0"].T, "recurrent_kernel": p["weight_hh_l0"].T,
              "bias": p["bias_ih_l0"] + p["bias_hh_l0"]}
  else:  # r and z add both biases; n keeps b_hn inside r * (W_hn h + b_hn)
    ours = GRU(h)
    params = {"input_kernel": p["weight_ih_l0"].T, "recurrent_kernel": p["weight_hh_l0"].T,
              "bias": p["bias_ih_l0"] + p["bias_hh_l0"].at[2 * h:].set(0.0),
              "recurrent_bias": p["bias_hh_l0"][2 * h:]}
  x = _normal((3, 7, d))
  w = _normal((3, 7, h), seed=1)
  y_ref, gx_ref, g_ref = _torch_run(module, x, w)

  def loss(params, x):
    return jnp.sum(ours.apply({"params": params}, x) * w)

  y = ours.apply({"params": params}, x)
  g, gx = jax.grad(loss, argnums=(0, 1))(params, x)
  _close(y, y_ref)
  _close(gx, gx_ref)
  _close(g["input_kernel"], g_ref["weight_ih_l0"].T)
  _close(g["recurrent_kernel"], g_ref["weight_hh_l0"].T)
  if kind == "lstm":
    _close(g["bias"], g_ref["bias_ih_l0"])
  else:
    _close(g["bias"], g_ref["bias_ih_l0"])
    _close(g["recurrent_bias"], g_ref["bias_hh_l0"][2 * h:])
