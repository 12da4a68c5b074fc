"""Schedules and optimizers built from config.optim."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from dcrn_jax import UserError, optim


def _optim(**overrides):
  c = default.get_config().optim
  for k, v in overrides.items():
    c[k] = v
  return c


def test_warmup_cosine_rises_linearly_then_decays_to_the_end_value():
  s = optim.create_schedule(_optim(schedule="warmup_cosine", learning_rate=0.1, warmup_steps=10,
                                   end_lr_factor=0.01), num_train_steps=110)
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(5)), 0.05, rtol=1e-6)
  np.testing.assert_allclose(float(s(10)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(s(110)), 0.001, rtol=1e-4)
  assert float(s(60)) < 0.1


def test_constant_cosine_and_piecewise_schedules():
  assert float(optim.create_schedule(_optim(schedule="constant"), 100)(57)) == pytest.approx(1e-3)
  cos = optim.create_schedule(_optim(schedule="cosine", learning_rate=1.0), 100)
  np.testing.assert_allclose([float(cos(0)), float(cos(50)), float(cos(100))], [1, 0.5, 0],
                             atol=1e-6)
  pw = optim.create_schedule(_optim(schedule="piecewise", learning_rate=1.0, boundaries=(10, 20),
                                    decay_factor=0.1), 100)
  np.testing.assert_allclose([float(pw(9)), float(pw(10)), float(pw(25))], [1, 0.1, 0.01],
                             rtol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
  tx, _ = optim.create_optimizer(_optim(optimizer=name, schedule="constant", learning_rate=0.05,
                                        weight_decay=1e-4), num_train_steps=200)
  params = {"w": jnp.array([3.0, -2.0])}
  opt_state = tx.init(params)
  loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
  for _ in range(200):
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.05


def test_gradient_clipping_bounds_the_update():
  tx, _ = optim.create_optimizer(_optim(optimizer="sgd", momentum=0.0, schedule="constant",
                                        learning_rate=1.0, grad_clip_norm=0.5), 10)
  params = {"w": jnp.zeros(4)}
  updates, _ = tx.update({"w": jnp.full(4, 100.0)}, tx.init(params), params)
  np.testing.assert_allclose(float(optax.global_norm(updates)), 0.5, rtol=1e-5)


@pytest.mark.parametrize("overrides,match", [
    (dict(optimizer="adagrad"), "unknown optim.optimizer='adagrad'"),
    (dict(schedule="linear"), "unknown optim.schedule='linear'"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(schedule="piecewise", boundaries=()), "boundaries"),
    (dict(schedule="warmup_cosine", warmup_steps=-1), "warmup_steps=-1 must be >= 0"),
])
def test_bad_optimizer_settings_are_user_errors(overrides, match):
  with pytest.raises(UserError, match=match):
    optim.create_optimizer(_optim(**overrides), num_train_steps=100)


def test_a_warmup_longer_than_half_the_run_is_shortened_with_a_note():
  c = _optim(schedule="warmup_cosine", learning_rate=0.1, warmup_steps=50)
  assert optim.warmup_steps(c, 1500) == (50, None)
  assert optim.warmup_steps(c, 100) == (50, None)
  steps, note = optim.warmup_steps(c, 5)
  assert steps == 2 and note == ("optim.warmup_steps=50 is more than half of num_train_steps=5: "
                                 "warming up over 2 step(s) instead")
  s = optim.create_schedule(c, 5)
  np.testing.assert_allclose([float(s(i)) for i in range(3)], [0.0, 0.05, 0.1], rtol=1e-6)
  # Other schedules have no warmup to shorten.
  assert optim.warmup_steps(_optim(schedule="cosine", warmup_steps=50), 5) == (50, None)


def test_schedule_notes_name_a_shortened_warmup_and_unreachable_boundaries():
  assert optim.schedule_notes(_optim(schedule="warmup_cosine", warmup_steps=10), 100) == []
  assert "warming up over 2 step(s)" in optim.schedule_notes(
      _optim(schedule="warmup_cosine", warmup_steps=50), 5)[0]
  notes = optim.schedule_notes(_optim(schedule="piecewise", boundaries=(3, 3000)), 5)
  assert notes == ["optim.boundaries (3000,) are at or past num_train_steps=5: those rate "
                   "changes never happen in this run"]


def test_onecycle_follows_pytorchs_one_cycle_defaults_as_openstl_trains():
  s = optim.create_schedule(_optim(schedule="onecycle", learning_rate=5e-4), num_train_steps=1000)
  np.testing.assert_allclose(float(s(0)), 5e-4 / 25, rtol=1e-5)  # div_factor 25
  np.testing.assert_allclose(float(s(300)), 5e-4, rtol=1e-5)  # peak after 30 % of the run
  np.testing.assert_allclose(float(s(1000)), 5e-4 / 25 / 1e4, rtol=1e-3)  # final_div_factor 1e4
  assert float(s(150)) < float(s(300)) and float(s(650)) < float(s(300))
