"""Tasks: one class per task (`config.task`); the loop asks it once and gets one `Plan`.

train.py, predict and export never test a task's name. A run's task is built once from the
config, which it checks and reads into a few typed settings; asked once more with the dataset,
it answers everything the loop needs in one `Plan`:

    task = tasks.for_config(config)   # config.task's class, its fields checked and read once
    plan = task.plan(info)            # the dataset checked; the answers below, once

A task class (`Task`) answers, without a config:

    name                      'classify' or 'forecast' (the value of config.task)
    serves_predict            whether predict / export serve its trained runs; predictor()
                              then gives the class (Predictor, ForecastPredictor) that does
    frames_out                its models predict frames (predict's --out/--format, the
                              report's forecast sections), not class probabilities
    per_class                 its evaluation scores classes (eval.json's per-class tables and
                              eval_predictions.jsonl, the report's gallery)
    report_pictures           the picture files its final evaluation writes, which the
                              report (report/) shows when present
    from_config(config)       the task of one run: value checks of its own config fields
                              (UserError), then the fields it needs, read once

and a task of one run answers `plan(info)` (info: data.get_info's DatasetInfo), whose fields
are in `Plan`. `get(name)` returns the class of a name (one error line for an unknown one);
`for_config(config)` checks that the model is one of the task's and builds the run's task.
Task modules are imported when first asked for, so that this package stays cheap to import
(steps.py reads forecasting's loss from it).
"""

import dataclasses
import importlib
from typing import Callable, ClassVar, Protocol, Sequence

from dcrn_jax import evaluation
from dcrn_jax.errors import UserError
from dcrn_jax.models.classifiers import model_task

# config.task -> the module whose TASK (a Task class) answers for it.
_MODULES = {"classify": "dcrn_jax.tasks.classification",
            "forecast": "dcrn_jax.tasks.forecasting"}
NAMES = tuple(_MODULES)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything the loop needs of a run's task, answered once (`Task.plan`).

  Attributes:
    input_shape: one example as the model reads it, no batch axis (the dataset's, or a
      forecaster's input frames).
    metric_names: the metrics its evaluation reports (what best_metric may name);
      `metric_direction(name)` says which way is better.
    data_words: what the start-of-run line says about the data.
    train_step: the pure train step (steps.py) with the task's settings bound; the loop binds
      `schedule=` (the learning-rate schedule) and jits it.
    evaluator: (model, mesh, fed) -> run, run(variables, batches, mesh, prefetch) ->
      (metrics, predictions) over one pass of the eval split; each of its jitted steps goes
      through fed(fn, quiet=False) (train.py: the device-resident split's gather, the scaling).
    write_run_files: (workdir) -> None: what a later predict/export reads (process 0).
    write_predictions: (workdir, predictions) -> path or None: the final evaluation's
      per-example file (eval_predictions.jsonl), or none; process 0.
    write_pictures: (workdir, metrics, predictions) -> [paths]: the pictures of `--mode=eval`.
  """

  input_shape: tuple[int, ...]
  metric_names: tuple[str, ...]
  data_words: str
  train_step: Callable
  evaluator: Callable
  write_run_files: Callable
  write_predictions: Callable
  write_pictures: Callable


class Task(Protocol):
  """What every task answers (see the module docstring for each question)."""

  name: ClassVar[str]
  serves_predict: ClassVar[bool]
  frames_out: ClassVar[bool]
  per_class: ClassVar[bool]
  report_pictures: ClassVar[Sequence[str]]

  @classmethod
  def from_config(cls, config) -> "Task": ...
  @classmethod
  def predictor(cls) -> type: ...
  def plan(self, info) -> Plan: ...


def get(name: str) -> type[Task]:
  """The task class named `name` (config.task); UserError naming the valid ones if none."""
  if name not in _MODULES:
    raise UserError(f"task={name!r} must be one of {list(NAMES)}")
  return importlib.import_module(_MODULES[name]).TASK


def for_config(config) -> Task:
  """The task of the run `config` describes: the model named by config.model.name checked to
  be one of config.task's, then the task's own fields (UserError for either)."""
  task = get(config.task)
  if model_task(config.model.name) != task.name:
    raise UserError(f"model.name={config.model.name!r} is a model for task="
                    f"{model_task(config.model.name)!r}, but task={config.task!r}; set both "
                    "(forecasting models: convlstm_forecaster, convlstm_autoregressive)")
  return task.from_config(config)


def metric_direction(name: str) -> str:
  """'max' or 'min': which way is better for a reported metric (evaluation.METRIC_DIRECTIONS
  holds every task's)."""
  return evaluation.metric_direction(name)


def all_report_pictures() -> list[str]:
  """Every task's picture files, which the report shows when a workdir holds them."""
  return [picture for name in NAMES for picture in get(name).report_pictures]
