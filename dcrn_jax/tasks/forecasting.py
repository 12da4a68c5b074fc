"""Forecasting: the first data.input_frames frames of a sequence in, the next
data.output_frames out (models/forecasters.py; metrics as OpenSTL's, forecast_evaluation.py).

Its evaluation writes eval.json only (no per-example file); `--mode=eval` also draws
forecast_pictures.py's pictures. Predict and export serve its runs with predicted frames
(predict_forecast.py, export_forecast.py).
"""

import functools

from dcrn_jax import evaluation, steps, workdir as workdir_lib
from dcrn_jax.errors import UserError
from dcrn_jax.tasks import forecast_evaluation, forecast_pictures


class Forecasting:
  """The `Task` (tasks/__init__.py) of config.task='forecast'."""

  name = "forecast"
  serves_predict = True
  report_pictures = (forecast_pictures.PNG_NAME,)

  def check_config(self, config) -> None:
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

  def check_dataset(self, config, info) -> None:
    if len(info.input_shape) != 4:
      raise UserError(f"task='forecast' needs sequences (T, H, W, C), but data.name="
                      f"{config.data.name!r} gives examples of shape {tuple(info.input_shape)}")

  def model_input_shape(self, config, info) -> tuple[int, ...]:
    """(input_frames, H, W, C): the forecaster reads only the input frames."""
    return (config.data.input_frames,) + tuple(info.input_shape[1:])

  def metric_names(self, config, info) -> list[str]:
    del config, info
    return ["loss"] + [prefix + name for prefix in evaluation.FORECASTS
                       for name in evaluation.FORECAST_FRAME_METRICS]

  def describe_data(self, config, info) -> str:
    return (f"sequences of shape {info.input_shape}: {config.data.input_frames} frames in, "
            f"{config.data.output_frames} predicted")

  def train_step(self, config, schedule):
    f = config.forecast
    return functools.partial(
        steps.forecast_train_step, schedule=schedule, input_frames=config.data.input_frames,
        output_frames=config.data.output_frames, l1_weight=f.l1_weight,
        sampling=(f.sampling_start, f.sampling_decay, f.sampling_stop_step),
        reverse=((f.r_sampling_step_1, f.r_sampling_step_2, f.r_exp_alpha)
                 if f.reverse_sampling else None),
        grad_clip_norm=config.optim.grad_clip_norm, ema_decay=config.optim.ema_decay)

  def evaluator(self, model, info, config, mesh, fed):
    """forecast_evaluation.evaluate; its predictions are the first forecast.num_shown test
    sequences (at most one eval batch), for pictures."""
    del info
    d = config.data
    rows_fn = fed(forecast_evaluation.make_rows_fn(
        model, mesh, input_frames=d.input_frames, output_frames=d.output_frames,
        l1_weight=config.forecast.l1_weight))
    shown = min(config.forecast.num_shown, config.eval_batch_size)
    examples_fn = fed(forecast_evaluation.make_examples_fn(
        model, mesh, input_frames=d.input_frames, output_frames=d.output_frames,
        num_shown=shown), quiet=True) if shown else None
    return functools.partial(forecast_evaluation.evaluate, rows_fn, examples_fn=examples_fn)

  def write_run_files(self, workdir: str, info, input_shape) -> None:
    del info
    workdir_lib.write_input_shape(workdir, input_shape)

  def predictor(self):
    from dcrn_jax import predict_forecast  # pylint: disable=g-import-not-at-top
    return predict_forecast.ForecastPredictor

  def write_predictions(self, workdir: str, predictions, info) -> None:
    del workdir, predictions, info  # Its predictions are sequences, drawn by write_pictures.

  def write_pictures(self, workdir: str, metrics: dict, predictions) -> list[str]:
    paths = forecast_pictures.write(workdir, predictions) if predictions else []
    paths.append(forecast_pictures.mse_per_step_png(workdir, metrics))
    return paths


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


TASK = Forecasting()
