"""The task protocol (dcrn_jax/tasks/): every task answers every question; an unknown task is
one error line. Fast: no training, no compilation."""

import functools
import importlib.util
import inspect
import json
import os

import numpy as np
import pytest

from dcrn_jax import evaluation, parallel, tasks
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_QUESTIONS = ("check_config", "check_dataset", "model_input_shape", "metric_names",
              "describe_data", "train_step", "evaluator", "write_run_files", "write_predictions",
              "write_pictures", "predictor")
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
    assert isinstance(task.serves_predict, bool)
    assert all(isinstance(p, str) for p in task.report_pictures)
    for question in _QUESTIONS:
      assert callable(getattr(task, question)), (name, question)
      protocol = inspect.signature(getattr(tasks.Task, question))
      answer = inspect.signature(getattr(type(task), question))
      assert list(answer.parameters) == list(protocol.parameters), (name, question)


def test_predict_and_export_serve_each_task_with_its_predictor():
  from dcrn_jax import predict, predict_forecast  # pylint: disable=g-import-not-at-top
  assert tasks.get("classify").serves_predict and tasks.get("forecast").serves_predict
  assert tasks.get("classify").predictor() is predict.Predictor
  assert tasks.get("forecast").predictor() is predict_forecast.ForecastPredictor
  assert tasks.all_report_pictures() == ["forecast_examples.png"]


@pytest.mark.parametrize("index", [0, 1])
def test_each_task_answers_for_its_config(index, tmp_path):
  task, config, takes, refuses = _cases()[index]
  assert tasks.for_config(config) is task
  task.check_config(config)
  task.check_dataset(config, takes)
  with pytest.raises(UserError):
    task.check_dataset(config, refuses)
  shape = task.model_input_shape(config, takes)
  expected = takes.input_shape if task.name == "classify" else (
      (config.data.input_frames,) + takes.input_shape[1:])
  assert shape == tuple(expected)
  names = task.metric_names(config, takes)
  assert "loss" in names
  assert {tasks.metric_direction(n) for n in names} <= {"max", "min"}
  assert str(takes.input_shape) in task.describe_data(config, takes)
  step = task.train_step(config, schedule=lambda s: 0.1)
  assert isinstance(step, functools.partial) and step.keywords["schedule"](0) == 0.1
  model = create_model(config.model, num_classes=takes.num_classes, input_shape=shape,
                       output_frames=config.data.output_frames)
  wrapped = []

  def fed(fn, quiet=False):
    wrapped.append(quiet)
    return fn
  assert callable(task.evaluator(model, takes, config, parallel.create_mesh(), fed))
  assert wrapped  # Every jitted step of the evaluator goes through the loop's feeding.
  task.write_run_files(str(tmp_path), takes, shape)
  written = sorted(os.listdir(tmp_path))
  assert written == (["input.json", "label_map.json"] if task.name == "classify"
                     else ["input.json"])


def test_classification_writes_its_predictions_and_no_pictures(tmp_path):
  task = tasks.get("classify")
  predictions = evaluation.Predictions(
      example_id=np.arange(2), label=np.array([0, 2]),
      probabilities=np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]), views=np.ones(2, int),
      view_hits=np.ones(2, int), loss=np.array([0.22, 0.51]))
  path = task.write_predictions(str(tmp_path), predictions, _IMAGES)
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  assert len(records) == 2
  assert task.write_pictures(str(tmp_path), {}, predictions) == []
  assert tasks.get("forecast").write_predictions(str(tmp_path), None, _SEQUENCES) is None


def test_unknown_task_is_one_error_line():
  with pytest.raises(UserError) as e:
    tasks.get("segment")
  assert str(e.value) == "task='segment' must be one of ['classify', 'forecast']"
  config = _config("convlstm.py")
  config.task = "forecast"
  with pytest.raises(UserError, match="is a model for task='classify'") as e:
    tasks.for_config(config)
  assert "\n" not in str(e.value)
