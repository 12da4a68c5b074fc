"""Forecasting: the first data.input_frames frames of a sequence in, the next
data.output_frames out (models/forecasters.py; metrics as OpenSTL's, forecast_evaluation.py).

Its evaluation writes eval.json only (no per-example file); `--mode=eval` also draws
forecast_pictures.py's pictures. Predict and export serve its runs with predicted frames
(predict_forecast.py, export_forecast.py).
"""

import dataclasses
import functools

from dcrn_jax import evaluation, steps, workdir as workdir_lib
from dcrn_jax.errors import UserError
from dcrn_jax.tasks import Plan, forecast_evaluation, forecast_pictures


@dataclasses.dataclass(frozen=True)
class Forecasting:
  """The `Task` (tasks/__init__.py) of config.task='forecast', with the settings of one run.

  Attributes (read from the config by `from_config`, which checks them):
    data_name: config.data.name (named in its errors).
    input_frames, output_frames: config.data's: frames in, frames predicted.
    l1_weight: config.forecast.l1_weight (the loss's L1 term).
    sampling: (start, decay, stop_step) of scheduled sampling (config.forecast.sampling_*).
    reverse: (r_sampling_step_1, r_sampling_step_2, r_exp_alpha) with
      forecast.reverse_sampling, else None.
    grad_clip_norm, ema_decay: config.optim's.
    num_shown: test sequences kept for pictures: forecast.num_shown, at most one eval batch.
  """

  name = "forecast"
  serves_predict = True
  frames_out = True
  per_class = False
  report_pictures = (forecast_pictures.PNG_NAME,)

  data_name: str
  input_frames: int
  output_frames: int
  l1_weight: float
  sampling: tuple
  reverse: tuple | None
  grad_clip_norm: float
  ema_decay: float
  num_shown: int

  @classmethod
  def from_config(cls, config) -> "Forecasting":
    _check(config)
    d, f = config.data, config.forecast
    return cls(data_name=d.name, input_frames=d.input_frames, output_frames=d.output_frames,
               l1_weight=f.l1_weight,
               sampling=(f.sampling_start, f.sampling_decay, f.sampling_stop_step),
               reverse=((f.r_sampling_step_1, f.r_sampling_step_2, f.r_exp_alpha)
                        if f.reverse_sampling else None),
               grad_clip_norm=config.optim.grad_clip_norm, ema_decay=config.optim.ema_decay,
               num_shown=min(f.num_shown, config.eval_batch_size))

  @classmethod
  def predictor(cls):
    from dcrn_jax import predict_forecast  # pylint: disable=g-import-not-at-top
    return predict_forecast.ForecastPredictor

  def plan(self, info) -> Plan:
    if len(info.input_shape) != 4:
      raise UserError(f"task='forecast' needs sequences (T, H, W, C), but data.name="
                      f"{self.data_name!r} gives examples of shape {tuple(info.input_shape)}")
    # The forecaster reads only the input frames: (input_frames, H, W, C).
    input_shape = (self.input_frames,) + tuple(info.input_shape[1:])
    return Plan(
        input_shape=input_shape,
        metric_names=("loss",) + tuple(prefix + name for prefix in evaluation.FORECASTS
                                       for name in evaluation.FORECAST_FRAME_METRICS),
        data_words=(f"sequences of shape {info.input_shape}: {self.input_frames} frames in, "
                    f"{self.output_frames} predicted"),
        train_step=functools.partial(
            steps.forecast_train_step, input_frames=self.input_frames,
            output_frames=self.output_frames, l1_weight=self.l1_weight, sampling=self.sampling,
            reverse=self.reverse, grad_clip_norm=self.grad_clip_norm, ema_decay=self.ema_decay),
        evaluator=self._evaluator,
        write_run_files=functools.partial(workdir_lib.write_input_shape,
                                          input_shape=input_shape),
        write_predictions=_no_predictions,
        write_pictures=_write_pictures)

  def _evaluator(self, model, mesh, fed):
    """forecast_evaluation.evaluate; its predictions are the first num_shown test sequences
    (at most one eval batch), for pictures."""
    frames = dict(input_frames=self.input_frames, output_frames=self.output_frames)
    rows_fn = fed(forecast_evaluation.make_rows_fn(model, mesh, l1_weight=self.l1_weight,
                                                   **frames))
    examples_fn = fed(forecast_evaluation.make_examples_fn(
        model, mesh, num_shown=self.num_shown, **frames), quiet=True) if self.num_shown else None
    return functools.partial(forecast_evaluation.evaluate, rows_fn, examples_fn=examples_fn)


def _no_predictions(workdir: str, predictions) -> None:
  del workdir, predictions  # Its predictions are sequences, drawn by write_pictures.


def _write_pictures(workdir: str, metrics: dict, predictions) -> list[str]:
  paths = forecast_pictures.write(workdir, predictions) if predictions else []
  paths.append(forecast_pictures.mse_per_step_png(workdir, metrics))
  return paths


def _check(config) -> None:
  """Value checks of the task's own fields; raises UserError."""
  d, f = config.data, config.forecast
  _check_predrnn_v2(config)
  for name in ("input_frames", "output_frames"):
    if d[name] < 1:
      raise UserError(f"data.{name}={d[name]} must be >= 1")
  if d.num_frames != d.input_frames + d.output_frames:
    raise UserError(f"data.num_frames={d.num_frames} must be data.input_frames + "
                    f"data.output_frames = {d.input_frames + d.output_frames} for "
                    f"task='forecast' (each sequence is read whole); set "
                    f"--config.data.num_frames={d.input_frames + d.output_frames}")
  if f.l1_weight < 0:
    raise UserError(f"forecast.l1_weight={f.l1_weight} must be >= 0")
  if not 0.0 <= f.sampling_start <= 1.0:
    raise UserError(f"forecast.sampling_start={f.sampling_start} must be a probability in "
                    "[0, 1]")
  if f.sampling_decay < 0 or f.sampling_stop_step < 0:
    raise UserError("forecast.sampling_decay and forecast.sampling_stop_step must be >= 0")
  if f.num_shown < 0:
    raise UserError(f"forecast.num_shown={f.num_shown} must be >= 0")


def _check_predrnn_v2(config):
  """PredRNN-V2's fields are refused on any other model (they would be silently ignored)."""
  m, f = config.model, config.forecast
  if m.name != "predrnn_v2":
    for name, value, off in (("model.decouple_beta", m.decouple_beta, 0.0),
                             ("forecast.reverse_sampling", f.reverse_sampling, False)):
      if value != off:
        raise UserError(f"{name}={value} is a predrnn_v2 field but model.name={m.name!r}; "
                        f"set --config.model.name=predrnn_v2 or leave {name} at {off}")
  if m.decouple_beta < 0:
    raise UserError(f"model.decouple_beta={m.decouple_beta} must be >= 0")
  if f.reverse_sampling and not (0 <= f.r_sampling_step_1 < f.r_sampling_step_2
                                 and f.r_exp_alpha > 0):
    raise UserError("forecast.r_sampling_step_1 < forecast.r_sampling_step_2 (both >= 0) and "
                    "forecast.r_exp_alpha > 0 are needed for reverse sampling")


TASK = Forecasting
