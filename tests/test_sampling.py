"""The sampling schedules at chosen updates, against OpenSTL's formulas worked by hand
(models/sampling.py cites them; constants of OpenSTL's configs/mmnist/PredRNNv2.py)."""

import math

import jax
import numpy as np
import pytest

from dcrn_jax.models import sampling


@pytest.mark.parametrize("step, r_eta, eta", [
    (0, 0.5, 0.5), (24_999, 0.5, 0.5), (25_000, 0.5, 0.5),
    (30_000, 1 - 0.5 * math.exp(-1), 0.4), (37_500, 1 - 0.5 * math.exp(-2.5), 0.25),
    (49_999, 1 - 0.5 * math.exp(-24_999 / 5000), 0.5 / 25_000), (50_000, 1.0, 0.0),
    (80_000, 1.0, 0.0)])
def test_reverse_schedule_at_a_few_updates(step, r_eta, eta):
  got_r, got = sampling.reverse_probabilities(step, step_1=25_000, step_2=50_000, alpha=5000.0)
  assert float(got_r) == pytest.approx(r_eta, abs=1e-6)
  assert float(got) == pytest.approx(eta, abs=1e-6)


@pytest.mark.parametrize("step, eta", [(0, 1 - 2e-5), (9, 1 - 2e-4), (49_998, 1 - 2e-5 * 49_999),
                                       (49_999, 0.0), (50_000, 0.0)])
def test_scheduled_sampling_at_a_few_updates(step, eta):
  # OpenSTL decrements eta by the rate before each update; its configs: start 1, rate 2e-5,
  # stop at 50,000 (at 49,999 the formula gives exactly 0 as well).
  got = sampling.sampling_probability(step, start=1.0, decay=2e-5, stop_step=50_000)
  assert float(got) == pytest.approx(max(eta, 0.0), abs=1e-6)


def test_masks_have_the_shape_each_schedule_covers_and_its_frequency():
  key = jax.random.key(0)
  plain, eta = sampling.teacher_forcing(key, 0, batch=4000, input_frames=10, output_frames=10,
                                        sampling=(0.7, 0.0, 100))
  assert plain.shape == (4000, 9) and float(eta) == pytest.approx(0.7)
  assert np.mean(plain) == pytest.approx(0.7, abs=0.01)
  mask, eta = sampling.teacher_forcing(key, 30_000, batch=4000, input_frames=10,
                                       output_frames=10, sampling=(1.0, 2e-5, 50_000),
                                       reverse=(25_000, 50_000, 5000.0))
  assert mask.shape == (4000, 18) and float(eta) == pytest.approx(0.4)
  assert np.mean(mask[:, :9]) == pytest.approx(1 - 0.5 * math.exp(-1), abs=0.01)
  assert np.mean(mask[:, 9:]) == pytest.approx(0.4, abs=0.01)
