"""The real train loop with task='forecast': learning, beating the last-frame baseline, exact
resume with scheduled sampling, --mode=eval's files, and several processes."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import forecast_moving_digits
from dcrn_jax import UserError, checkpoint, data, train
from dcrn_jax.state import init_variables

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
  c = forecast_moving_digits.get_config()
  c.data.image_size, c.data.num_frames, c.data.input_frames, c.data.output_frames = 32, 8, 4, 4
  c.data.num_train_examples, c.data.num_test_examples = 256, 24
  c.model.convlstm_features, c.model.patch_size = (16, 16), 4
  c.batch_size, c.eval_batch_size = 8, 16
  c.num_train_steps, c.log_every_steps = 12, 4
  c.eval_every_steps, c.checkpoint_every_steps = 0, 4
  c.optim.learning_rate, c.optim.warmup_steps = 3e-3, 2
  c.forecast.num_shown = 2
  c.progress_bar = False
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for part in path:
      node = node[part]
    node[leaf] = value
  return c


def _params(workdir, config):
  _, _, plan, model = train._setup(config)  # pylint: disable=protected-access
  shape = plan.input_shape
  abstract = jax.eval_shape(lambda: init_variables(model, shape, jax.random.key(0)))
  step, variables = checkpoint.Checkpointer(str(workdir), read_only=True).restore_variables(
      None, abstract)
  return step, jax.tree.map(np.asarray, variables["params"])


def _metrics(workdir):
  return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_the_forecast_beats_the_last_frame_baseline(tmp_path):
  config = tiny_config(num_train_steps=150, log_every_steps=25, checkpoint_every_steps=150)
  result = train.train_and_evaluate(config, str(tmp_path))
  losses = [r["loss"] for r in _metrics(tmp_path) if r["split"] == "train"]
  assert losses[-1] < 0.7 * losses[0], losses
  assert result["num_examples"] == 24
  assert result["mse"] < 0.9 * result["baseline_last_frame_mse"], result
  assert result["mse"] < result["baseline_zeros_mse"], result

  # --mode=eval: eval.json (every metric, per-step MSE) and the pictures.
  evaluated = train.evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "eval.json").read_text())
  assert saved["step"] == 150 and saved["mse"] == pytest.approx(result["mse"], rel=1e-6)
  assert len(saved["mse_per_step"]) == 4 and len(saved["baseline_last_frame_mse_per_step"]) == 4
  assert evaluated["ssim"] == saved["ssim"]
  png = Image.open(tmp_path / "forecast_examples.png")
  assert png.size[1] > 2 * 3 * 48  # Two sequences of three rows of (enlarged) frames.
  gif = Image.open(tmp_path / "forecast_examples" / "1.gif")
  assert gif.n_frames == 8  # 4 input frames, then 4 predicted.
  assert Image.open(tmp_path / "forecast_mse_per_step.png").size[0] > 300
  assert not (tmp_path / "label_map.json").exists()


@pytest.mark.slow  # ~3 min on the shared 2-core CPU (compiles of the stacked cells).
def test_predrnn_v2_trains_with_its_decoupling_loss_and_evaluates(tmp_path):
  from configs import forecast_moving_digits_predrnn  # pylint: disable=import-outside-toplevel
  config = forecast_moving_digits_predrnn.get_config("predrnn_v2")
  small = tiny_config(num_train_steps=3, log_every_steps=3, checkpoint_every_steps=3,
                      **{"model.convlstm_features": (8, 8)})
  small.model.name, small.model.decouple_beta = "predrnn_v2", config.model.decouple_beta
  for key in ("reverse_sampling", "r_sampling_step_1", "r_sampling_step_2", "r_exp_alpha"):
    small.forecast[key] = config.forecast[key]
  result = train.train_and_evaluate(small, str(tmp_path))
  (logged,) = [r for r in _metrics(tmp_path) if r["split"] == "train"]
  assert logged["sampling_probability"] == pytest.approx(0.5)  # Reverse schedule, before step 1.
  assert result["num_examples"] == 24 and np.isfinite(result["mse"])


# Every model that reads its own predictions; PredRNN-V2 with its decoupling loss and a reverse
# schedule that changes within the run.
_RESUMED = {
    "convlstm_autoregressive": {"model.convlstm_features": (8,)},
    "predrnn": {"model.convlstm_features": (8, 8)},
    "predrnn_pp": {"model.convlstm_features": (8, 8)},
    "predrnn_v2": {"model.convlstm_features": (8, 8), "model.decouple_beta": 0.1,
                   "forecast.reverse_sampling": True, "forecast.r_sampling_step_1": 2,
                   "forecast.r_sampling_step_2": 10, "forecast.r_exp_alpha": 2.0},
}


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
@pytest.mark.parametrize("name", sorted(_RESUMED))
def test_an_interrupted_autoregressive_run_resumes_to_the_same_parameters(tmp_path, monkeypatch,
                                                                          name):
  # Scheduled sampling that changes every step: the resumed run must draw the same masks.
  config = tiny_config(**{"model.name": name, "forecast.sampling_decay": 0.05, **_RESUMED[name]})
  train.train_and_evaluate(config, str(tmp_path / "full"))
  real_batches = data.train_batches

  def interrupted(*args, **kwargs):  # Ctrl-C while the loop is between steps 8 and 12.
    for i, batch in enumerate(real_batches(*args, **kwargs)):
      if i == 10:
        raise KeyboardInterrupt
      yield batch

  monkeypatch.setattr(data, "train_batches", interrupted)
  with pytest.raises(UserError, match="latest checkpoint, step 8"):
    train.train_and_evaluate(config, str(tmp_path / "resumed"))
  monkeypatch.setattr(data, "train_batches", real_batches)
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  step_a, a = _params(tmp_path / "full", config)
  step_b, b = _params(tmp_path / "resumed", config)
  assert step_a == step_b == 12
  jax.tree.map(np.testing.assert_array_equal, a, b)
  probabilities = [r["sampling_probability"] for r in _metrics(tmp_path / "resumed")
                   if r["split"] == "train"]
  assert probabilities[0] > probabilities[-1] > 0  # The mean over each logged interval.


def test_config_mistakes_are_one_line_errors(tmp_path):
  for overrides, message in [
      ({"data.num_frames": 9}, "num_frames=9 must be data.input_frames"),
      ({"task": "classify"}, "is a model for task='forecast'"),
      ({"model.name": "convlstm"}, "is a model for task='classify'"),
      ({"task": "predict"}, "task='predict' must be one of"),
      ({"data.output_frames": 0, "data.num_frames": 4}, "output_frames=0 must be >= 1"),
      ({"forecast.sampling_start": 1.5}, "sampling_start=1.5"),
      ({"forecast.l1_weight": -1.0}, "l1_weight"),
      ({"forecast.sampling_decay": -1.0}, "sampling_decay"),
      ({"forecast.num_shown": -1}, "num_shown"),
      ({"model.patch_size": 3}, "patch_size=3"),
  ]:
    with pytest.raises(UserError, match=message):
      train.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "x"))
  # A classifier cannot read unlabelled sequences.
  config = tiny_config(task="classify", **{"model.name": "convlstm"})
  with pytest.raises(UserError, match="has no labels"):
    train.train_and_evaluate(config, str(tmp_path / "y"))


_WORKER = """
import sys, json
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from dcrn_jax import distributed, train
from test_forecast_train import tiny_config
pid = int(sys.argv[1])
distributed.initialize(coordinator_address="127.0.0.1:{port}", num_processes=2, process_id=pid)
config = tiny_config(num_train_steps=4, **{{"data.num_test_examples": 13}})
_, metrics = train.fit(config, {workdir!r})
json.dump(metrics, open({workdir!r} + f".{{pid}}.json", "w"))
"""


@pytest.mark.slow  # Two processes compiling and training: the longest forecasting test.
def test_two_processes_of_two_devices_score_every_sequence_once_like_one_process(tmp_path):
  """Four devices in two processes: the batch split over both axes of the run."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  workdir = tmp_path / "run"
  code = _WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), port=port,
                        workdir=str(workdir))
  env = {**__import__("os").environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  procs_out = []
  for p in procs:
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-3000:]
    procs_out.append(out)
  two = [json.loads((tmp_path / f"run.{i}.json").read_text()) for i in range(2)]
  assert two[0] == two[1] and two[0]["num_examples"] == 13
  assert "4 device(s)" in procs_out[0] and "2 process(es)" in procs_out[0], procs_out[0][-2000:]
  # The same checkpoint scored by one process (13 sequences: padded batches on both sides).
  one = train.evaluate(tiny_config(num_train_steps=4, **{"data.num_test_examples": 13}),
                       str(workdir))
  for key in ("mse", "mae", "ssim", "psnr", "baseline_last_frame_mse", "loss"):
    np.testing.assert_allclose(two[0][key], one[key], rtol=1e-5, err_msg=key)
