"""A JAX profiler trace of a few training steps, into WORKDIR/profile.

    python -m dcrn_jax.main ... --profile_steps=5

The trace starts after the first step (so compilation stays out of it) and stops once N more
steps have finished on the device. jax.profiler writes WORKDIR/profile/plugins/profile/<run>/
<host>.xplane.pb (TensorBoard's profile plugin and XProf read it) and perfetto_trace.json.gz
(open it at https://ui.perfetto.dev). Every process of a multi-host run traces its own host.
"""

import os

import jax

from dcrn_jax.errors import UserError

FOLDER = "profile"


class StepTrace:
  """Traces `num_steps` steps: `start` after the compiling step, `step_done` after each later
  one; `close` ends a trace the run did not finish (it stopped early)."""

  def __init__(self, workdir: str, num_steps: int):
    if num_steps < 0:
      raise UserError(f"--profile_steps={num_steps} must be >= 0 (0: no trace)")
    self.directory = os.path.join(workdir, FOLDER)
    self._num_steps = num_steps
    self._last_step = None

  def start(self, step: int) -> None:
    """Begins tracing after `step` (the compiling one) has finished."""
    if self._num_steps and self._last_step is None:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)
      self._first_step, self._last_step = step + 1, step + self._num_steps

  def step_done(self, step: int, outputs) -> None:
    """After `step` is dispatched: once it is the last one traced, waits for `outputs` (so the
    device work is in the trace) and stops."""
    if self._last_step is not None and step >= self._last_step:
      self._stop(step, outputs)

  def close(self, step: int, outputs=None) -> None:
    if self._last_step is not None:
      self._stop(step, outputs)

  def _stop(self, step: int, outputs) -> None:
    try:
      jax.block_until_ready(outputs)
    except RuntimeError:  # The run stopped with an error: its buffers may be gone already.
      pass
    jax.profiler.stop_trace()
    traced = max(step - self._first_step + 1, 0)
    self._last_step = None
    self._num_steps = 0
    if jax.process_index() == 0:
      print(f"profile: {traced} step(s) after step {self._first_step - 1} traced into "
            f"{self.directory} (tensorboard --logdir {self.directory}, or open its "
            "perfetto_trace.json.gz at https://ui.perfetto.dev)", flush=True)
