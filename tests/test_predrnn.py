"""PredRNN and PredRNN++ against PyTorch implementations written from the papers' equations
(tests/torch_predrnn.py): the cells' carries over a few steps, the stacked models' predictions
with teacher forcing, and every parameter's gradient, weights mapped slice by slice.

Tolerances (float32 both sides, JAX pinned to 'highest' precision): 1e-5 absolute on values,
1e-4 relative + 1e-5 absolute on gradients (sums over a few hundred products).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_predrnn as ref  # noqa: E402  (tests/ is on sys.path under pytest)
from dcrn_jax.models import predrnn  # noqa: E402

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

B, T_IN, T_OUT, S, C, FEATS = 2, 3, 3, 6, 2, 4
CELLS = {"st_lstm": (predrnn.STLSTMParams, predrnn.st_lstm, ref.st_lstm, ref.ST_LSTM),
         "causal_lstm": (predrnn.CausalLSTMParams, predrnn.causal_lstm, ref.causal_lstm,
                         ref.CAUSAL)}


def _t(a):
  """NHWC numpy/jax -> NCHW torch."""
  return torch.tensor(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_carries_over_steps_equal_the_papers_equations(name):
  make, step, torch_step, table = CELLS[name]
  params = make(FEATS, 3, C).init(jax.random.key(0))["params"]
  # Non-zero biases so that every bias is checked.
  params = {k: v + 0.1 * jax.random.normal(jax.random.key(9), v.shape) if k == "bias" else v
            for k, v in params.items()}
  xs = jax.random.normal(jax.random.key(1), (4, B, S, S, C))
  w = ref.paper_weights(params, table)
  with jax.default_matmul_precision("highest"):
    c = h = m = jnp.zeros((B, S, S, FEATS))
    tc = th = tm = torch.zeros(B, FEATS, S, S)
    for x in xs:
      gx = predrnn.conv2d(x, params["input_kernel"]) + params["bias"]
      c, h, m = step(params, gx, c, h, m)
      tc, th, tm = torch_step(w, _t(x), tc, th, tm)
      for got, want in ((c, tc), (h, th), (m, tm)):
        np.testing.assert_allclose(np.asarray(got), _nhwc(want), rtol=0, atol=1e-5)


# The causal stack is the slower compile: it runs with -m slow (the cells run by default).
@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.slow) if c == "causal_lstm"
                                  else c for c in sorted(CELLS)])
def test_stacked_model_predictions_and_all_gradients_equal_the_papers(cell):
  _, _, torch_step, table = CELLS[cell]
  model = predrnn.PredRNN(output_frames=T_OUT, features=(FEATS, FEATS), kernel_size=3,
                          cell=cell)
  seq = jax.random.uniform(jax.random.key(2), (B, T_IN + T_OUT, S, S, C))
  inputs, targets = seq[:, :T_IN], seq[:, T_IN:]
  forcing = jnp.array([[1, 0], [0, 1]], jnp.float32)
  params = model.init(jax.random.key(3), inputs)["params"]
  weights = jax.random.normal(jax.random.key(4), (B, T_IN + T_OUT - 1, S, S, C))

  def loss(p):
    out = model.apply({"params": p}, inputs, targets=targets, teacher_forcing=forcing)
    return jnp.sum(out * weights), out

  with jax.default_matmul_precision("highest"):
    (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
  cells = [ref.paper_weights(params[f"cell{i}"], table) for i in range(2)]
  head = [torch.tensor(np.asarray(params["to_frames_kernel"]).T[:, :, None, None].copy(),
                       requires_grad=True),
          torch.tensor(np.asarray(params["to_frames_bias"]), requires_grad=True)]
  highway = ref.paper_weights(params["ghu"], ref.GHU) if cell == "causal_lstm" else None
  frames = torch.tensor(np.asarray(seq[:, :-1]).transpose(0, 1, 4, 2, 3).copy())
  use_true = torch.tensor(np.concatenate([np.ones((B, T_IN)), np.asarray(forcing)], 1),
                          dtype=torch.float32)
  want = ref.predrnn(cells, head, frames, use_true, torch_step, highway)
  torch_weights = torch.tensor(np.asarray(weights).transpose(0, 1, 4, 2, 3).copy())
  (want * torch_weights).sum().backward()
  np.testing.assert_allclose(np.asarray(out), want.detach().numpy().transpose(0, 1, 3, 4, 2),
                             rtol=0, atol=1e-5)

  def check(jax_grads, torch_weights_, table_):
    for name, (param, index, gates) in table_.items():
      g = np.asarray(ref.slice_of(np.asarray(jax_grads[param]), index, gates))
      if g.ndim == 4:
        g = g.transpose(3, 2, 0, 1)
      np.testing.assert_allclose(g, torch_weights_[name].grad.numpy(), rtol=1e-4, atol=1e-5,
                                 err_msg=name)

  for i in range(2):
    check(grads[f"cell{i}"], cells[i], table)
  if highway is not None:
    check(grads["ghu"], highway, ref.GHU)
  np.testing.assert_allclose(np.asarray(grads["to_frames_kernel"]).T,
                             head[0].grad.numpy()[:, :, 0, 0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(grads["to_frames_bias"]), head[1].grad.numpy(),
                             rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_pytorch_cells_the_benchmark_times_equal_the_paper_forms(name):
  """bench_forecast.py times PyTorch's cells with one convolution per input; they must be the
  paper's equations (torch only: both sides float32 PyTorch, 1e-5 absolute)."""
  make, _, paper_step, table = CELLS[name]
  fused_step = {"st_lstm": ref.st_lstm_fused, "causal_lstm": ref.causal_lstm_fused}[name]
  rng = np.random.default_rng(0)

  def random_params(module):  # Shapes only from flax (nothing compiled); values from numpy.
    shapes = jax.eval_shape(module.init, jax.random.key(0))["params"]
    return {k: rng.normal(0, 0.3, v.shape).astype(np.float32) for k, v in shapes.items()}
  params, ghu_params = random_params(make(FEATS, 3, C)), random_params(predrnn.GHUParams(FEATS, 3))
  paper, fused = ref.paper_weights(params, table), ref.fused_weights(params)
  ghu_paper, ghu_fused = ref.paper_weights(ghu_params, ref.GHU), ref.fused_weights(ghu_params)
  with torch.no_grad():
    a = b = tuple(torch.zeros(B, FEATS, S, S) for _ in range(3))
    za = zb = torch.zeros(B, FEATS, S, S)
    for x in rng.normal(size=(3, B, S, S, C)).astype(np.float32):
      a, b = paper_step(paper, _t(x), *a), fused_step(fused, _t(x), *b)
      za, zb = ref.ghu(ghu_paper, a[1], za), ref.ghu_fused(ghu_fused, b[1], zb)
      for got, want in zip(b + (zb,), a + (za,)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)

def test_decoupling_term_is_the_mean_absolute_cosine_per_channel():
  dc = jax.random.normal(jax.random.key(5), (B, S, S, FEATS))
  dm = jax.random.normal(jax.random.key(6), (B, S, S, FEATS))
  adapter = jax.random.normal(jax.random.key(7), (FEATS, FEATS))
  with jax.default_matmul_precision("highest"):
    got = float(predrnn.decoupling(adapter, dc, dm))
  # TPAMI 2022, eq. 7, averaged over batch and channels: W_d a 1 x 1 convolution, the cosine of
  # each channel's map, in PyTorch.
  w = torch.tensor(np.asarray(adapter).T[:, :, None, None].copy())
  a = torch.nn.functional.conv2d(_t(dc), w).flatten(2)
  b = torch.nn.functional.conv2d(_t(dm), w).flatten(2)
  want = torch.nn.functional.cosine_similarity(a, b, dim=2).abs().mean().item()
  assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.slow  # ~25 s of compiles on the shared CPU.
def test_predrnn_v2_sows_its_weighted_decoupling_loss_and_reads_a_mask_for_every_step():
  model = predrnn.PredRNN(output_frames=T_OUT, features=(FEATS, FEATS), decouple_beta=0.5)
  seq = jax.random.uniform(jax.random.key(2), (B, T_IN + T_OUT, S, S, C))
  inputs, targets = seq[:, :T_IN], seq[:, T_IN:]
  variables = model.init(jax.random.key(3), inputs)
  assert variables["params"]["adapter"].shape == (FEATS, FEATS)
  ones = jnp.ones((B, T_IN + T_OUT - 2))
  out, sown = model.apply(variables, inputs, targets=targets, teacher_forcing=ones, train=True,
                          mutable=["losses"])
  (term,) = sown["losses"]["decoupling"]
  assert 0 < float(term) <= 0.5
  # All true frames read at every step: the same as plain PredRNN's full teacher forcing.
  plain = model.apply(variables, inputs, targets=targets, teacher_forcing=ones[:, T_IN - 1:])
  np.testing.assert_allclose(out, plain, rtol=0, atol=1e-6)
  # A mask inside the input steps changes what step 1 reads, hence the next predictions.
  inside = ones.at[:, 0].set(0)
  changed = model.apply(variables, inputs, targets=targets, teacher_forcing=inside)
  np.testing.assert_array_equal(changed[:, 0], out[:, 0])
  assert np.abs(np.asarray(changed[:, 1]) - np.asarray(out[:, 1])).max() > 1e-4
  # Evaluation sows nothing.
  _, sown = model.apply(variables, inputs, mutable=["losses"])
  assert not sown
