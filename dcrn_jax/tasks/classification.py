"""Classification: examples (images or clips) -> class probabilities (evaluation.py).

Its evaluation writes eval.json and WORKDIR/eval_predictions.jsonl (one record per example);
its runs leave label_map.json and input_shape.json, which predict.py and export.py read.
"""

import functools
import os

from dcrn_jax import data, evaluation, steps, workdir as workdir_lib
from dcrn_jax.errors import UserError


class Classification:
  """The `Task` (tasks/__init__.py) of config.task='classify'."""

  name = "classify"
  serves_predict = True
  report_pictures = ()

  def check_config(self, config) -> None:
    del config  # Its fields (label_smoothing, ...) are the loop's own and checked there.

  def check_dataset(self, config, info) -> None:
    if info.num_classes == 0:
      raise UserError(f"data.name={config.data.name!r} has no labels: it is a dataset of "
                      "sequences to forecast. Set --config.task=forecast and a forecasting "
                      "model, or pick a labelled dataset")

  def model_input_shape(self, config, info) -> tuple[int, ...]:
    del config
    return tuple(info.input_shape)

  def metric_names(self, config, info) -> list[str]:
    del config
    return evaluation.metric_names(info.num_classes, info.eval_views)

  def describe_data(self, config, info) -> str:
    del config
    return f"examples of shape {info.input_shape}, {info.num_classes} classes"

  def train_step(self, config, schedule):
    return functools.partial(steps.train_step, schedule=schedule,
                             label_smoothing=config.label_smoothing,
                             grad_clip_norm=config.optim.grad_clip_norm,
                             ema_decay=config.optim.ema_decay)

  def evaluator(self, model, info, config, mesh, fed):
    """evaluation.evaluate: padded rows masked, each example counted once, a video's views
    averaged; its predictions are every example's (evaluation.Predictions)."""
    del config
    return functools.partial(evaluation.evaluate, fed(evaluation.make_log_probs_fn(model, mesh)),
                             class_names=info.class_names)

  def write_run_files(self, workdir: str, info, input_shape) -> None:
    data.write_label_map(info, workdir)
    workdir_lib.write_input_shape(workdir, input_shape)

  def predictor(self):
    from dcrn_jax import predict  # pylint: disable=g-import-not-at-top
    return predict.Predictor

  def write_predictions(self, workdir: str, predictions, info) -> str:
    path = os.path.join(workdir, workdir_lib.PREDICTIONS_FILE)
    workdir_lib.write_jsonl(path, evaluation.to_records(predictions, info.class_names,
                                                        info.eval_ids))
    return path

  def write_pictures(self, workdir: str, metrics: dict, predictions) -> list[str]:
    del workdir, metrics, predictions
    return []


TASK = Classification()
