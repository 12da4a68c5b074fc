"""The fast recurrent layers against their specification, the plain references of
`models/reference.py` (an LSTM/GRU step in a lax.scan, differentiated by autodiff), and against
references written by others (Flax cells under nn.RNN, PyTorch nn.GRU / nn.LSTM) with the same
weights mapped over: outputs, final carries and gradients (with respect to inputs, initial carries
and every parameter). Then the options: reverse, initial carry, remat_chunk, unroll,
Bidirectional, Stack, bfloat16, initialisation, and a compiled size that does not depend on the
number of steps.

Tolerances, relative to each array's largest magnitude:
  float32   2e-5 (TOL): implementations differ only in summation order.
  bfloat16  the layer computing in bfloat16 against the float32 reference: 3e-2 (BF16_TOL) for
            outputs and carries, 5e-2 (BF16_GRAD_TOL) for gradients. bfloat16 keeps 8 bits of
            mantissa (relative rounding ~4e-3 per matmul/convolution input), and errors add up
            over the steps and through the backward pass (the largest seen: 1.1e-2 for outputs,
            1.7e-2 for gradients).
"""

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax.models import GRU, LSTM, ConvGRU, ConvLSTM, conv, reference, rnn_scan
from dcrn_jax.models.recurrent import Bidirectional, Stack
from dcrn_jax.models.rnn_maps import Conv2DMap, DenseMap

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

TOL = 2e-5  # float32 (see the module docstring)
BF16_TOL, BF16_GRAD_TOL = 3e-2, 5e-2
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


_COMPILED = {}  # Tests that run the same model on the same shapes share one compilation.


def _outputs_and_grads(model, params, x):
  """(model outputs, (d loss / d params, d loss / d x)), in one compiled call."""
  key = (repr(model), x.shape, conv.cpu_forms())
  if key not in _COMPILED:
    def f(p, x):
      out = model.apply({"params": p}, x)
      return _loss(out, jax.random.key(7)), out
    _COMPILED[key] = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
  (_, out), grads = _COMPILED[key](params, x)
  return out, grads


# ---------------------------------------------------------------------------------------------
# Flax ConvLSTMCell (gates i, g, f, o; a fixed +1 on f; two biases) under nn.RNN.


def _flax_convlstm_to_ours(p):
  order = (0, 2, 1, 3)  # ours i, f, g, o from Flax's i, g, f, o
  bias = _gates(p["ih"]["bias"] + p["hh"]["bias"], order)
  bias = bias.at[F:2 * F].add(1.0)  # Flax adds 1 to the forget pre-activation
  return {"input_kernel": _gates(p["ih"]["kernel"], order),
          "recurrent_kernel": _gates(p["hh"]["kernel"], order), "bias": bias}


@pytest.fixture(params=["per_step", "batched"])
def conv_mode(request, monkeypatch):
  """Runs a test with the forms CPUs get (the convolution's input-side work step by step in the
  loops, weight gradients as matmuls) and those accelerators get (batched outside the loops,
  autodiff's weight-gradient convolutions): `conv.cpu_forms()` decides both."""
  if request.param == "batched":
    monkeypatch.setattr(conv, "cpu_forms", lambda: False)
  assert Conv2DMap((3, 3)).per_step == (request.param == "per_step")
  return request.param


def test_convlstm_equals_flax_convlstmcell_outputs_carry_and_gradients(conv_mode):
  # (Even kernels, with their asymmetric 'SAME' padding, are checked on the maps below.)
  x = _normal((B, T, HW, HW, C))
  ref = nn.RNN(nn.ConvLSTMCell(F, (3, 3)), return_carry=True)
  ref_params = _random_params(ref, x)
  ours = ConvLSTM(F, 3, return_carry=True)
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


# ---------------------------------------------------------------------------------------------
# The linear maps' hand-written gradient forms against autodiff of the plain operation.


@pytest.mark.parametrize("kernel,channels", [((3, 3), 3), ((3, 3), 20), ((2, 3), 20)])
def test_conv_map_gradient_forms_equal_autodiff(kernel, channels):
  m = Conv2DMap(kernel)
  x = _normal((2, 3, 5, 6, channels))  # (T, N, H, W, C): leading axes are all batch
  w = _normal(kernel + (channels, 8), seed=1)
  dy = _normal((2, 3, 5, 6, 8), seed=2)

  @jax.jit
  def forms(x, w, dy):
    y, vjp = jax.vjp(lambda x, w: jax.lax.conv_general_dilated(
        x.reshape(-1, 5, 6, channels), w, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(y_shape), x, w)
    dx, dw = vjp(dy)
    ours = (m(x, w), m.input_grad(dy, m.transpose_weight(w)), m.weight_grad(x, dy),
            m.weight_grad_matmuls(x, dy), m.weight_grad_conv(x, dy))  # CPU and accelerator forms
    return (y, dx, dw, dw, dw), ours

  y_shape = (2, 3, 5, 6, 8)
  for ref, ours in zip(*forms(x, w, dy)):
    _close(ours, ref)


def test_dense_map_gradient_forms_equal_autodiff():
  m = DenseMap()
  x, w, dy = _normal((4, 3, 6)), _normal((6, 5), seed=1), _normal((4, 3, 5), seed=2)
  _, vjp = jax.vjp(jnp.dot, x, w)
  dx, dw = vjp(dy)
  _close(m.input_grad(dy, m.transpose_weight(w)), dx)
  _close(m.weight_grad(x, dy), dw)


# ---------------------------------------------------------------------------------------------
# ConvGRU (no Flax cell exists) against autodiff of a direct implementation.


def _conv_gru_reference(params, x):
  conv = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def step(h, x_t):
    xr, xz, xn = jnp.split(conv(x_t, params["input_kernel"]) + params["bias"], 3, -1)
    hr, hz, hn = jnp.split(conv(h, params["recurrent_kernel"]), 3, -1)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + params["recurrent_bias"]))
    h = (1 - z) * n + z * h
    return h, h

  h0 = jnp.zeros(x.shape[:1] + x.shape[2:-1] + (F,))
  h, ys = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
  return h, jnp.swapaxes(ys, 0, 1)


def test_conv_gru_equals_autodiff_of_a_direct_implementation(conv_mode):
  x = _normal((B, T, HW, HW, C))
  ours = ConvGRU(F, return_carry=True)
  params = _random_params(ours, x)
  y_ref, g_ref = _outputs_and_grads(_Fn(_conv_gru_reference), params, x)
  y, g = _outputs_and_grads(ours, params, x)
  jax.tree.map(_close, y, y_ref)
  jax.tree.map(_close, g, g_ref)


class _Fn:
  """Gives a plain function f(params, x) the `apply({"params": p}, x)` form of a module."""

  def __init__(self, fn):
    self.fn = fn

  def apply(self, variables, x):
    return self.fn(variables["params"], x)


# ---------------------------------------------------------------------------------------------
# The plain references (models/reference.py), the specification: every output, final carry and
# gradient (inputs, initial carries, every parameter), float32 and bfloat16.


def _initial_carry(layer, x, seed):
  state = x.shape[:1] + x.shape[2:-1] + (layer.features if hasattr(layer, "features")
                                         else layer.hidden_size,)
  h = _normal(state, seed)
  return (_normal(state, seed + 1), h) if isinstance(layer, (LSTM, ConvLSTM)) else h


def _value_and_grads(fn, params, x, carry):
  """(outputs, d loss / d (params, x, carry)) of fn(params, x, carry) -> (carry, outputs)."""
  def f(p, x, c):
    out = fn(p, x, c)
    return _loss(out, jax.random.key(7)), out
  (_, out), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(params, x,
                                                                                     carry)
  return out, grads


_REFERENCE = {}  # (reference, mapping, shape) -> its outputs and gradients, for every mode


def _check_against_reference(layer, ref, mapping, x, dtype):
  carry = _initial_carry(layer, x, seed=3)
  params = _random_params(layer, x)
  ours = layer.clone(return_carry=True, dtype=dtype)
  out, grads = _value_and_grads(
      lambda p, x, c: ours.apply({"params": p}, x, initial_carry=c), params, x, carry)
  key = (ref, mapping, x.shape)
  if key not in _REFERENCE:
    _REFERENCE[key] = _value_and_grads(lambda p, x, c: ref(p, x, c, mapping=mapping), params, x,
                                       carry)
  out_ref, grads_ref = _REFERENCE[key]
  tol, grad_tol = (TOL, TOL) if dtype == jnp.float32 else (BF16_TOL, BF16_GRAD_TOL)
  assert jax.tree.structure(out) == jax.tree.structure(out_ref)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(out_ref)):  # final carry, outputs
    assert a.dtype in (dtype, jnp.float32)
    _close(a.astype(jnp.float32), b, tol)
  assert jax.tree.structure(grads) == jax.tree.structure(grads_ref)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):  # params, x, carry
    assert a.dtype == jnp.float32
    _close(a, b, grad_tol)


DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])


@DTYPES
@pytest.mark.parametrize("layer,ref", [(LSTM(5), reference.lstm_reference),
                                       (GRU(5), reference.gru_reference)])
def test_dense_layers_equal_the_plain_reference(layer, ref, dtype):
  _check_against_reference(layer, ref, reference.dense, _normal((3, 7, 6)), dtype)


@DTYPES
@pytest.mark.parametrize("layer,ref", [(ConvLSTM(F), reference.lstm_reference),
                                       (ConvGRU(F), reference.gru_reference)])
def test_conv_layers_equal_the_plain_reference(layer, ref, dtype, conv_mode):
  _check_against_reference(layer, ref, reference.conv, _normal((B, T, HW, HW, C)), dtype)


def test_cotangent_namedtuples_follow_the_argument_order():
  # custom_vjp wants the backward pass's cotangents as a plain tuple in argument order; the
  # NamedTuples they are built from must list the same names in the same order.
  for fn, grads in [(rnn_scan.lstm_sequence, rnn_scan.LSTMGrads),
                    (rnn_scan.gru_sequence, rnn_scan.GRUGrads)]:
    assert tuple(inspect.signature(fn.fun).parameters)[1:] == grads._fields


# ---------------------------------------------------------------------------------------------
# Options.


def test_reverse_with_initial_carry_equals_flax_reverse_keep_order():
  x = _normal((3, 6, 4))
  c0, h0 = _normal((3, 5), seed=3), _normal((3, 5), seed=4)
  ref = nn.RNN(nn.OptimizedLSTMCell(5), return_carry=True, reverse=True, keep_order=True)
  ref_params = _random_params(ref, x)
  ours = LSTM(5, return_carry=True, reverse=True)
  params = _flax_lstm_to_ours(ref_params["cell"])

  def run(model, p):
    def loss(p, x, c0, h0):
      carry, y = model.apply({"params": p}, x, initial_carry=(c0, h0))
      return _loss((carry, y), jax.random.key(7)), (carry, y)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(p, x, c0, h0)

  (_, out_ref), g_ref = run(ref, ref_params)
  (_, out), g = run(ours, params)
  jax.tree.map(_close, out, out_ref)
  _close(out[1][:, -1], out_ref[1][:, -1])
  jax.tree.map(_close, g[1:], g_ref[1:])  # inputs and both initial carries
  jax.tree.map(_close, g[0], _flax_lstm_to_ours(g_ref[0]["cell"]))


@pytest.mark.parametrize("layer", [ConvLSTM(F, remat_chunk=2, return_carry=True),
                                   GRU(5, unroll=3, return_carry=True),
                                   LSTM(5, remat_chunk=3, unroll=2, return_carry=True)])
def test_remat_chunk_and_unroll_change_nothing_but_speed_and_memory(layer):
  # T = 5 or 7 steps: remat runs a first piece of 1 step, then whole chunks.
  x = _normal((B, T, HW, HW, C)) if isinstance(layer, ConvLSTM) else _normal((3, 7, 6))
  plain = layer.clone(remat_chunk=0, unroll=1)
  params = _random_params(plain, x)
  out_ref, g_ref = _outputs_and_grads(plain, params, x)
  out, g = _outputs_and_grads(layer, params, x)
  jax.tree.map(lambda a, b: _close(a, b, tol=1e-6), (out, g), (out_ref, g_ref))


def test_remat_chunk_keeps_less_memory_for_the_backward_pass():
  x = jnp.zeros((2, 64, 8, 8, 4))

  def temp_bytes(layer):
    params = jax.eval_shape(layer.init, jax.random.key(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x)[:, -1])))
    return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes

  assert temp_bytes(ConvLSTM(8, remat_chunk=8)) < 0.5 * temp_bytes(ConvLSTM(8))


def test_bidirectional_and_stack_compose_their_layers():
  x = _normal((3, 6, 4))
  bi = Bidirectional(GRU(5), return_carry=True)
  stack = Stack([LSTM(5), GRU(3)], return_carry=True)
  p_bi, p_stack = _random_params(bi, x), _random_params(stack, x, seed=3)

  @jax.jit
  def run(p_bi, p_stack, x):
    mid = LSTM(5).apply({"params": p_stack["layer0"]}, x)
    return (bi.apply({"params": p_bi}, x), GRU(5).apply({"params": p_bi["forward"]}, x),
            GRU(5, reverse=True).apply({"params": p_bi["backward"]}, x),
            stack.apply({"params": p_stack}, x), mid,
            GRU(3).apply({"params": p_stack["layer1"]}, mid))

  ((h_fwd, h_bwd), y), fwd, bwd, (((_, h0), h1), y2), mid, top = run(p_bi, p_stack, x)
  _close(y, jnp.concatenate([fwd, bwd], -1))
  _close(h_fwd, fwd[:, -1])
  _close(h_bwd, bwd[:, 0])  # the backward pass ends at the first step
  _close(y2, top)
  _close(h0, mid[:, -1])
  _close(h1, top[:, -1])


def test_stack_uses_layers_bound_to_another_module_as_given():
  class Outer(nn.Module):
    return_carry: bool = True

    @nn.compact
    def __call__(self, x):
      layers = [LSTM(5, return_carry=self.return_carry, name="first"),
                GRU(3, return_carry=True, name="second")]
      return Stack(layers=layers, between=[lambda y: 2.0 * y])(x)

  x = _normal((3, 6, 4))
  params = _random_params(Outer(), x)
  assert set(params) == {"first", "second"}  # the layers' own names, in Outer
  y = Outer().apply({"params": params}, x)
  mid = LSTM(5).apply({"params": params["first"]}, x)
  _close(y, GRU(3).apply({"params": params["second"]}, 2.0 * mid))
  with pytest.raises(ValueError, match="return_carry=True"):
    Outer(return_carry=False).init(jax.random.key(0), x)


def test_layer_options_are_keyword_only():
  assert LSTM(5, return_carry=True).return_carry and ConvLSTM(4, 5).kernel_size == 5
  with pytest.raises(TypeError):
    LSTM(5, True)  # pylint: disable=too-many-function-args
  with pytest.raises(TypeError):
    ConvGRU(4, 3, True)  # pylint: disable=too-many-function-args


def test_bfloat16_compute_keeps_float32_params_state_and_gradients():
  x = _normal((B, T, HW, HW, C))
  layer = ConvLSTM(F, return_carry=True)
  params = _random_params(layer, x)
  ((c, _), y), g = _outputs_and_grads(layer, params, x)
  ((c16, h16), y16), g16 = _outputs_and_grads(layer.clone(dtype=jnp.bfloat16), params, x)
  assert y16.dtype == h16.dtype == jnp.bfloat16 and c16.dtype == jnp.float32
  _close(y16.astype(jnp.float32), y, tol=3e-2)
  _close(c16, c, tol=3e-2)
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g)):
    assert a.dtype == jnp.float32
    _close(a, b, tol=5e-2)


def test_initialisation_forget_bias_and_per_gate_orthogonal_kernels():
  p = jax.jit(LSTM(4, forget_bias=1.5).init)(jax.random.key(0), jnp.zeros((1, 2, 3)))["params"]
  np.testing.assert_array_equal(p["bias"], [0.0] * 4 + [1.5] * 4 + [0.0] * 8)
  for block in jnp.split(p["recurrent_kernel"], 4, -1):
    _close(block.T @ block, jnp.eye(4), tol=1e-5)
  shapes = jax.eval_shape(ConvLSTM(4).init, jax.random.key(0), jnp.zeros((1, 2, 5, 5, 3)))
  assert shapes["params"]["recurrent_kernel"].shape == (3, 3, 4, 16)


def test_compiled_program_does_not_grow_with_the_number_of_steps():
  def hlo_lines(layer, shape):
    x = jnp.zeros(shape)
    params = jax.eval_shape(layer.init, jax.random.key(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x))))
    return len(grad.lower(params, x).as_text().splitlines())

  for layer, shape in [(ConvLSTM(4), (2, None, 6, 6, 3)), (GRU(4), (2, None, 3)),
                       (ConvGRU(4, remat_chunk=4), (2, None, 6, 6, 3))]:
    short, long = (hlo_lines(layer, shape[:1] + (t,) + shape[2:]) for t in (8, 64))
    assert short == long


def test_wrong_input_rank_is_an_error_that_says_the_expected_shape():
  with pytest.raises(ValueError, match=r"ConvLSTM takes sequences \(B, T, H, W, C\)"):
    ConvLSTM(4).init(jax.random.key(0), jnp.zeros((2, 3, 4)))
