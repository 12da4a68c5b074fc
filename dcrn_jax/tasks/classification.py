"""Classification: examples (images or clips) -> class probabilities (evaluation.py).

Its evaluation writes eval.json and WORKDIR/eval_predictions.jsonl (one record per example);
its runs leave label_map.json and input_shape.json, which predict.py and export.py read.
"""

import dataclasses
import functools
import os

from dcrn_jax import data, evaluation, steps, workdir as workdir_lib
from dcrn_jax.errors import UserError
from dcrn_jax.tasks import Plan


@dataclasses.dataclass(frozen=True)
class Classification:
  """The `Task` (tasks/__init__.py) of config.task='classify', with the settings of one run.

  Attributes (read from the config by `from_config`):
    data_name: config.data.name (named in its errors).
    label_smoothing, grad_clip_norm, ema_decay: the train step's settings
      (config.label_smoothing, config.optim.grad_clip_norm, config.optim.ema_decay).
  """

  name = "classify"
  serves_predict = True
  frames_out = False
  per_class = True
  report_pictures = ()

  data_name: str
  label_smoothing: float
  grad_clip_norm: float
  ema_decay: float

  @classmethod
  def from_config(cls, config) -> "Classification":
    # Its fields (label_smoothing, ...) are the loop's own and checked there.
    return cls(data_name=config.data.name, label_smoothing=config.label_smoothing,
               grad_clip_norm=config.optim.grad_clip_norm, ema_decay=config.optim.ema_decay)

  @classmethod
  def predictor(cls):
    from dcrn_jax import predict  # pylint: disable=g-import-not-at-top
    return predict.Predictor

  def plan(self, info) -> Plan:
    if info.num_classes == 0:
      raise UserError(f"data.name={self.data_name!r} has no labels: it is a dataset of "
                      "sequences to forecast. Set --config.task=forecast and a forecasting "
                      "model, or pick a labelled dataset")
    input_shape = tuple(info.input_shape)
    return Plan(
        input_shape=input_shape,
        metric_names=tuple(evaluation.metric_names(info.num_classes, info.eval_views)),
        data_words=f"examples of shape {info.input_shape}, {info.num_classes} classes",
        train_step=functools.partial(steps.train_step, label_smoothing=self.label_smoothing,
                                     grad_clip_norm=self.grad_clip_norm,
                                     ema_decay=self.ema_decay),
        evaluator=functools.partial(_evaluator, info=info),
        write_run_files=functools.partial(_write_run_files, info=info, input_shape=input_shape),
        write_predictions=functools.partial(_write_predictions, info=info),
        write_pictures=_no_pictures)


def _evaluator(model, mesh, fed, *, info):
  """evaluation.evaluate: padded rows masked, each example counted once, a video's views
  averaged; its predictions are every example's (evaluation.Predictions)."""
  return functools.partial(evaluation.evaluate, fed(evaluation.make_log_probs_fn(model, mesh)),
                           class_names=info.class_names)


def _write_run_files(workdir: str, *, info, input_shape) -> None:
  data.write_label_map(info, workdir)
  workdir_lib.write_input_shape(workdir, input_shape)


def _write_predictions(workdir: str, predictions, *, info) -> str:
  path = os.path.join(workdir, workdir_lib.PREDICTIONS_FILE)
  workdir_lib.write_jsonl(path, evaluation.to_records(predictions, info.class_names,
                                                      info.eval_ids))
  return path


def _no_pictures(workdir: str, metrics: dict, predictions) -> list[str]:
  del workdir, metrics, predictions
  return []


TASK = Classification
