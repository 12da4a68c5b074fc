"""Tasks: one object per task (`config.task`) that answers everything the loop asks of it.

train.py, predict.py and export.py never test a task's name; they look the task up here and
ask it. Each task answers the same small protocol (`Task`):

    name                      'classify' or 'forecast' (the value of config.task)
    serves_predict            whether predict / export serve its trained runs; predictor()
                              then gives the class (Predictor, ForecastPredictor) that does
    report_pictures           the picture files its final evaluation writes, which the
                              report (report/) shows when present
    check_config(config)      value checks of the task's own config fields; raises UserError
    check_dataset(config, info)   whether the dataset (data.get_info) suits the task
    model_input_shape(config, info)   one example as the model reads it (no batch axis)
    metric_names(config, info)    the metrics its evaluation reports (what best_metric may
                              name); metric_direction(name) says which way is better
    describe_data(config, info)   the words the start-of-run line says about the data
    train_step(config, schedule)  the pure train step (steps.py) with its settings bound
    evaluator(model, info, config, mesh, fed)   (variables, batches, mesh, prefetch) ->
                              (metrics, predictions) over one pass of the eval split; each of
                              its jitted steps goes through fed(fn, quiet=False) (train.py: the
                              device-resident eval split's gather and the scaling)
    write_run_files(workdir, info, input_shape)   what a later predict/export reads
                              (process 0)
    write_predictions(workdir, predictions, info)   the per-example file of the final
                              evaluation (eval_predictions.jsonl), or None; process 0
    write_pictures(workdir, metrics, predictions)   the pictures of `--mode=eval`; their paths

`get(name)` returns the task of a name (one error line for an unknown one); `for_config(config)`
also checks that the model is one of the task's. Tasks are imported when first asked for, so
that this package stays cheap to import (steps.py reads forecasting's loss from it).
"""

import importlib
from typing import Callable, Protocol, Sequence

from dcrn_jax import evaluation
from dcrn_jax.errors import UserError
from dcrn_jax.models.classifiers import model_task

# config.task -> the module whose TASK answers for it.
_MODULES = {"classify": "dcrn_jax.tasks.classification",
            "forecast": "dcrn_jax.tasks.forecasting"}
NAMES = tuple(_MODULES)


class Task(Protocol):
  """What every task answers (see the module docstring for each question)."""

  name: str
  serves_predict: bool
  report_pictures: Sequence[str]

  def check_config(self, config) -> None: ...
  def check_dataset(self, config, info) -> None: ...
  def model_input_shape(self, config, info) -> tuple[int, ...]: ...
  def metric_names(self, config, info) -> list[str]: ...
  def describe_data(self, config, info) -> str: ...
  def train_step(self, config, schedule) -> Callable: ...
  def evaluator(self, model, info, config, mesh, fed) -> Callable: ...
  def write_run_files(self, workdir: str, info, input_shape) -> None: ...
  def predictor(self) -> type: ...
  def write_predictions(self, workdir: str, predictions, info) -> str | None: ...
  def write_pictures(self, workdir: str, metrics: dict, predictions) -> list[str]: ...


def get(name: str) -> Task:
  """The task named `name` (config.task); UserError naming the valid ones if there is none."""
  if name not in _MODULES:
    raise UserError(f"task={name!r} must be one of {list(NAMES)}")
  return importlib.import_module(_MODULES[name]).TASK


def for_config(config) -> Task:
  """config.task's task, once the model named by config.model.name is checked to be one of its
  models (UserError otherwise)."""
  task = get(config.task)
  if model_task(config.model.name) != task.name:
    raise UserError(f"model.name={config.model.name!r} is a model for task="
                    f"{model_task(config.model.name)!r}, but task={config.task!r}; set both "
                    "(forecasting models: convlstm_forecaster, convlstm_autoregressive)")
  return task


def metric_direction(name: str) -> str:
  """'max' or 'min': which way is better for a reported metric (evaluation.METRIC_DIRECTIONS
  holds every task's)."""
  return evaluation.metric_direction(name)


def all_report_pictures() -> list[str]:
  """Every task's picture files, which the report shows when a workdir holds them."""
  return [picture for name in NAMES for picture in get(name).report_pictures]
