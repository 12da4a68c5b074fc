"""dcrn_jax/explain.py: the occlusion fills, integrated gradients' completeness, and a sanity
check that can fail: a model trained where only one frame holds the label must point at that
frame, and the same model with re-randomised weights must not (Adebayo et al., 2018)."""

import functools

import jax
import numpy as np
import optax
import pytest

from configs import default
from dcrn_jax import explain, state as state_lib, steps
from dcrn_jax.models import create_model

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

FRAMES, SIGNAL_FRAME, SIZE, CLASSES = 8, 2, 16, 4  # The label shows in frame 3 of 8 only.


def one_frame_clips(n: int, seed: int):
  """n clips (n, 8, 16, 16, 1) of uniform noise in [0, 0.5]; frame SIGNAL_FRAME also holds a
  bright 6x6 square in the quadrant given by the label, the label's only trace."""
  rng = np.random.default_rng(seed)
  clips = rng.uniform(0.0, 0.5, size=(n, FRAMES, SIZE, SIZE, 1)).astype(np.float32)
  labels = rng.integers(0, CLASSES, size=n).astype(np.int32)
  for i, label in enumerate(labels):
    top, left = 8 * (label // 2) + 1, 8 * (label % 2) + 1
    clips[i, SIGNAL_FRAME, top:top + 6, left:left + 6] = 1.0
  return clips, labels


def numpy_variables(model, input_shape, seed: int) -> dict:
  """Random variables of the model's shapes (normal, std 1/sqrt(fan-in); biases 0), drawn with
  numpy: XLA:CPU takes seconds to compile JAX's initialisers (its threefry random bits) for
  each kernel shape, longer than the rest of a small test."""
  shapes = jax.eval_shape(lambda: state_lib.init_variables(model, input_shape,
                                                           jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if leaf.ndim < 2 or "bias" in name or "batch_stats" in name:
      return np.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _model():
  m = default.get_config().model
  m.name, m.conv_features, m.embed_dim, m.hidden_size = "cnn_gru", (8, 16), 32, 32
  return create_model(m, num_classes=CLASSES, input_shape=(FRAMES, SIZE, SIZE, 1))


def _inside_square(saliency, labels):
  """Each clip's share of signal-frame saliency (N, H, W) that falls on its square."""
  shares = []
  for s, label in zip(saliency, labels):
    top, left = 8 * (label // 2) + 1, 8 * (label % 2) + 1
    shares.append(s[top:top + 6, left:left + 6].sum() / s.sum())
  return np.asarray(shares)


@pytest.fixture(scope="module")
def explained():
  """Explanations of 64 test clips by the trained model ('trained') and by the same model with
  re-randomised weights ('random'), and the model and variables."""
  model, shape = _model(), (FRAMES, SIZE, SIZE, 1)
  tx = optax.adam(3e-3)
  variables = numpy_variables(model, shape, seed=0)
  state = state_lib.TrainState(step=np.int32(0), params=variables["params"], batch_stats={},
                               opt_state=tx.init(variables["params"]), ema_params={},
                               apply_fn=model.apply,
                               tx=tx)
  step = jax.jit(functools.partial(steps.train_step, schedule=lambda _: 3e-3))
  clips, labels = one_frame_clips(32 * 100, seed=1)
  for i in range(100):
    rows = slice(32 * i, 32 * i + 32)
    state, metrics = step(state, {"inputs": clips[rows], "label": labels[rows]},
                          jax.random.key(1))
  clips, labels = one_frame_clips(64, seed=2)
  logits = model.apply(state.variables, clips, train=False)
  accuracy = float(np.mean(np.argmax(logits, -1) == labels))
  assert accuracy > 0.9, f"the sanity model did not learn ({accuracy:.2f}; loss {metrics['loss']})"
  out = {"model": model, "clips": clips, "labels": labels}
  random = numpy_variables(model, shape, seed=99)  # Re-randomised: same shapes and scales.
  for name, variables in (("trained", state.variables), ("random", random)):
    out[name] = {
        "variables": variables,
        "drops": {fill: explain.occlusion_importance(model, variables, clips, labels, fill=fill)
                  for fill in explain.FILLS},
        "gxi": explain.gradient_x_input(model, variables, clips, labels),
        "ig": explain.integrated_gradients(model, variables, clips[:16], labels[:16], steps=32)}
  return out


def _first(per_frame):
  """The share of clips whose largest per-frame value is the signal frame's."""
  return float(np.mean(np.asarray(per_frame).argmax(axis=1) == SIGNAL_FRAME))


def test_occlusion_ranks_the_one_informative_frame_first_and_random_weights_do_not(explained):
  for fill in explain.FILLS:
    assert explained["trained"]["drops"][fill].shape == (64, FRAMES)
    assert _first(explained["trained"]["drops"][fill]) >= 0.9, fill
    assert _first(explained["random"]["drops"][fill]) <= 0.4, fill


def test_integrated_gradients_find_the_frame_and_the_square_random_weights_do_not(explained):
  labels = explained["labels"][:16]
  trained, random = explained["trained"]["ig"], explained["random"]["ig"]
  assert _first(explain.frame_mass(trained)) >= 0.75
  assert _first(explain.frame_mass(random)) <= 0.4
  # The square is 14 % of the frame's pixels (and its brightest: x * gradient favours it).
  inside = _inside_square(explain.saliency_map(trained)[:, SIGNAL_FRAME], labels)
  random_inside = _inside_square(explain.saliency_map(random)[:, SIGNAL_FRAME], labels)
  assert np.median(inside) > 0.6 and np.median(random_inside) < 0.5, (inside, random_inside)


def test_gradient_x_input_frame_mass_is_a_distribution_and_moves_with_training(explained):
  trained = explain.frame_mass(explained["trained"]["gxi"])
  random = explain.frame_mass(explained["random"]["gxi"])
  np.testing.assert_allclose(trained.sum(axis=1), 1.0, rtol=1e-6)
  # Plain gradient x input follows the noise frames' pixels (it ranked the signal frame first
  # for 2 of 64 clips when this was written), but training moves its mass toward that frame.
  assert trained[:, SIGNAL_FRAME].mean() > 1.5 * random[:, SIGNAL_FRAME].mean()


def test_integrated_gradients_add_up_to_the_logit_difference(explained):
  model, variables = explained["model"], explained["trained"]["variables"]
  x, y = explained["clips"][:16], explained["labels"][:16]
  logits = np.asarray(model.apply(variables, x, train=False))
  base = np.asarray(model.apply(variables, np.zeros_like(x), train=False))
  expected = logits[np.arange(16), y] - base[np.arange(16), y]
  total = explained["trained"]["ig"].reshape(16, -1).sum(axis=1)
  np.testing.assert_allclose(total, expected, rtol=0.02, atol=0.02 * np.abs(expected).max())


def test_fills_replace_exactly_one_frame():
  clips = np.arange(2 * 4 * 1 * 1 * 1, dtype=np.float32).reshape(2, 4, 1, 1, 1)
  middle = np.asarray(explain.fill_frame(clips, 1, "neighbours"))
  np.testing.assert_array_equal(middle[:, [0, 2, 3]], clips[:, [0, 2, 3]])
  np.testing.assert_array_equal(middle[:, 1], (clips[:, 0] + clips[:, 2]) / 2)
  ends = [np.asarray(explain.fill_frame(clips, t, "neighbours"))[:, t] for t in (0, 3)]
  np.testing.assert_array_equal(ends[0], clips[:, 1])
  np.testing.assert_array_equal(ends[1], clips[:, 2])
  mean = np.asarray(explain.fill_frame(clips, 2, "mean"))
  np.testing.assert_allclose(mean[:, 2], clips.mean(axis=1))


def test_bad_arguments_are_refused():
  model = _model()
  with pytest.raises(ValueError, match="fill="):
    explain.occlusion_importance(model, {}, np.zeros((1, 2, 4, 4, 1)), [0], fill="blur")
  with pytest.raises(ValueError, match="2\\+ frames"):
    explain.occlusion_importance(model, {}, np.zeros((1, 4, 4, 1)), [0])
  with pytest.raises(ValueError, match="steps=0"):
    explain.integrated_gradients(model, {}, np.zeros((1, 2, 4, 4, 1)), [0], steps=0)
