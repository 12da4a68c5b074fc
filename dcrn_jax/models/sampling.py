"""Which frames a forecaster reads during training: OpenSTL's sampling schedules (jax.numpy).

Scheduled sampling (PredRNN, ConvLSTM; OpenSTL `schedule_sampling`): at (0-based) update s,
each step after the input frames reads the true frame with probability

    eta(s) = max(start - decay * (s + 1), 0)  before stop_step, 0 from it on.

Reverse scheduled sampling (PredRNN-V2, Wang et al. TPAMI 2022; OpenSTL
`reserve_schedule_sampling_exp`, constants in its configs/mmnist/PredRNNv2.py: step_1 = 25,000,
step_2 = 50,000, alpha = 5,000): the steps inside the input frames (1 .. Tin-1) also may read the
model's own prediction, with a probability of the true frame rising to 1 while the forecast
steps' falls to 0:

    r_eta(s) = 0.5                                   s < step_1
             = 1 - 0.5 exp(-(s - step_1) / alpha)    step_1 <= s < step_2
             = 1                                     s >= step_2
    eta(s)   = 0.5                                   s < step_1
             = 0.5 - 0.5 (s - step_1) / (step_2 - step_1)   step_1 <= s < step_2
             = 0                                     s >= step_2
"""

import jax
import jax.numpy as jnp


def sampling_probability(step, *, start: float, decay: float, stop_step: int):
  """eta(s) of scheduled sampling (module docstring)."""
  p = jnp.maximum(start - decay * (jnp.asarray(step, jnp.float32) + 1), 0.0)
  return jnp.where(step < stop_step, p, 0.0)


def reverse_probabilities(step, *, step_1: int, step_2: int, alpha: float):
  """(r_eta(s), eta(s)) of reverse scheduled sampling (module docstring)."""
  s = jnp.asarray(step, jnp.float32)
  r_eta = jnp.where(s < step_1, 0.5,
                    jnp.where(s < step_2, 1.0 - 0.5 * jnp.exp(-(s - step_1) / alpha), 1.0))
  ramp = 0.5 - 0.5 / max(step_2 - step_1, 1) * (s - step_1)
  eta = jnp.where(s < step_1, 0.5, jnp.where(s < step_2, ramp, 0.0))
  return r_eta, eta


def teacher_forcing(rng, step, *, batch: int, input_frames: int, output_frames: int,
                    sampling, reverse=None):
  """The mask of true frames read and the forecast steps' probability of one.

  `sampling` = (start, decay, stop_step); `reverse` = (step_1, step_2, alpha) or None. Without
  reverse: (B, Tout - 1), the steps after the input frames. With it: (B, Tin + Tout - 2), every
  step after the first (inputs at r_eta, forecasts at eta)."""
  if reverse is None:
    start, decay, stop_step = sampling
    eta = sampling_probability(step, start=start, decay=decay, stop_step=stop_step)
    return jax.random.bernoulli(rng, eta, (batch, output_frames - 1)), eta
  step_1, step_2, alpha = reverse
  r_eta, eta = reverse_probabilities(step, step_1=step_1, step_2=step_2, alpha=alpha)
  r_rng, rng = jax.random.split(rng)
  inside = jax.random.bernoulli(r_rng, r_eta, (batch, input_frames - 1))
  after = jax.random.bernoulli(rng, eta, (batch, output_frames - 1))
  return jnp.concatenate([inside, after], 1), eta
