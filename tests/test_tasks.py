"""The task protocol (dcrn_jax/tasks/): every task answers every question; an unknown task is
one error line. Fast: no training, no compilation."""

import dataclasses
import functools
import importlib.util
import inspect
import json
import os

import ml_collections
import numpy as np
import pytest

from dcrn_jax import evaluation, parallel, tasks
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ANSWERS = ("name", "serves_predict", "frames_out", "per_class", "report_pictures")
_QUESTIONS = ("from_config", "predictor", "plan")
_CLIPS = DatasetInfo(num_classes=3, input_shape=(10, 16, 16, 1), num_train_examples=8,
                     num_eval_examples=4, class_names=("a", "b", "c"))
_SEQUENCES = DatasetInfo(num_classes=0, input_shape=(10, 16, 16, 1), num_train_examples=8,
                         num_eval_examples=4, class_names=())
_IMAGES = DatasetInfo(num_classes=3, input_shape=(16, 16, 1), num_train_examples=8,
                      num_eval_examples=4, class_names=("a", "b", "c"))


def _config(name):
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(_ROOT, "configs", name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _cases():
  """(task, its config, a dataset it takes, a dataset it refuses)."""
  return [(tasks.get("classify"), _config("convlstm.py"), _CLIPS, _SEQUENCES),
          (tasks.get("forecast"), _config("forecast_moving_digits.py"), _SEQUENCES, _IMAGES)]


def test_every_task_answers_the_protocol():
  assert set(tasks.NAMES) == {"classify", "forecast"}
  for name in tasks.NAMES:
    task = tasks.get(name)
    assert task.name == name
    for answer in ("serves_predict", "frames_out", "per_class"):
      assert isinstance(getattr(task, answer), bool), (name, answer)
    assert all(isinstance(p, str) for p in task.report_pictures)
    for question in _QUESTIONS:
      assert callable(getattr(task, question)), (name, question)
      protocol = inspect.signature(getattr(tasks.Task, question))
      answer = inspect.signature(getattr(task, question))
      assert list(answer.parameters) == list(protocol.parameters), (name, question)
  assert [f.name for f in dataclasses.fields(tasks.Plan)] == [
      "input_shape", "metric_names", "data_words", "train_step", "evaluator", "write_run_files",
      "write_predictions", "write_pictures"]


def test_predict_and_export_serve_each_task_with_its_predictor():
  from dcrn_jax import predict, predict_forecast  # pylint: disable=g-import-not-at-top
  assert tasks.get("classify").serves_predict and tasks.get("forecast").serves_predict
  assert tasks.get("classify").predictor() is predict.Predictor
  assert tasks.get("forecast").predictor() is predict_forecast.ForecastPredictor
  assert tasks.all_report_pictures() == ["forecast_examples.png"]
  # Each task's output kind, which predict's command line and the report ask.
  assert not tasks.get("classify").frames_out and tasks.get("classify").per_class
  assert tasks.get("forecast").frames_out and not tasks.get("forecast").per_class


@pytest.mark.parametrize("index", [0, 1])
def test_each_task_plans_for_its_config(index, tmp_path):
  task_class, config, takes, refuses = _cases()[index]
  task = tasks.for_config(config)
  assert isinstance(task, task_class)
  # The task of a run holds typed settings read once, never the config itself.
  assert not any(isinstance(getattr(task, f.name), ml_collections.ConfigDict)
                 for f in dataclasses.fields(task))
  with pytest.raises(UserError):
    task.plan(refuses)
  plan = task.plan(takes)
  expected = takes.input_shape if task.name == "classify" else (
      (config.data.input_frames,) + takes.input_shape[1:])
  assert plan.input_shape == tuple(expected)
  assert "loss" in plan.metric_names
  assert {tasks.metric_direction(n) for n in plan.metric_names} <= {"max", "min"}
  assert str(takes.input_shape) in plan.data_words
  assert isinstance(plan.train_step, functools.partial)
  assert "schedule" not in plan.train_step.keywords  # The loop binds it.
  settings = plan.train_step.keywords
  assert settings["grad_clip_norm"] == config.optim.grad_clip_norm
  assert settings["ema_decay"] == config.optim.ema_decay
  if task.name == "forecast":
    assert (settings["input_frames"], settings["output_frames"]) == (
        config.data.input_frames, config.data.output_frames)
  model = create_model(config.model, num_classes=takes.num_classes, input_shape=plan.input_shape,
                       output_frames=config.data.output_frames)
  wrapped = []

  def fed(fn, quiet=False):
    wrapped.append(quiet)
    return fn
  assert callable(plan.evaluator(model, parallel.create_mesh(), fed))
  assert wrapped  # Every jitted step of the evaluator goes through the loop's feeding.
  plan.write_run_files(str(tmp_path))
  written = sorted(os.listdir(tmp_path))
  assert written == (["input.json", "label_map.json"] if task.name == "classify"
                     else ["input.json"])


def test_a_forecasting_config_is_checked_when_its_task_is_built():
  config = _config("forecast_moving_digits.py")
  config.data.num_frames = config.data.input_frames + config.data.output_frames + 1
  with pytest.raises(UserError, match="data.num_frames=") as e:
    tasks.for_config(config)
  assert "\n" not in str(e.value)


def test_classification_writes_its_predictions_and_no_pictures(tmp_path):
  plan = tasks.for_config(_config("convlstm.py")).plan(_CLIPS)
  predictions = evaluation.Predictions(
      example_id=np.arange(2), label=np.array([0, 2]),
      probabilities=np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]), views=np.ones(2, int),
      view_hits=np.ones(2, int), loss=np.array([0.22, 0.51]))
  path = plan.write_predictions(str(tmp_path), predictions)
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  assert len(records) == 2 and records[1]["prediction"] == 2
  assert plan.write_pictures(str(tmp_path), {}, predictions) == []
  forecast = tasks.for_config(_config("forecast_moving_digits.py")).plan(_SEQUENCES)
  assert forecast.write_predictions(str(tmp_path), None) is None


def test_unknown_task_is_one_error_line():
  with pytest.raises(UserError) as e:
    tasks.get("segment")
  assert str(e.value) == "task='segment' must be one of ['classify', 'forecast']"
  config = _config("convlstm.py")
  config.task = "forecast"
  with pytest.raises(UserError, match="is a model for task='classify'") as e:
    tasks.for_config(config)
  assert "\n" not in str(e.value)
