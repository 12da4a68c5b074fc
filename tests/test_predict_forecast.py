"""Using a trained forecaster (predict_forecast.py, predict_forecast_cli.py, export_forecast.py,
data/sequence_files.py): every forecasting model of the MODELS table predicts what evaluation
predicts, from arrays and from clip files, and exports to a function JAX alone runs."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from dcrn_jax import UserError, export, train
from dcrn_jax.tasks import forecast_evaluation
from dcrn_jax.models.classifiers import MODELS

pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_export import jax_only_site  # pylint: disable=wrong-import-position
from test_forecast_train import tiny_config  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "forecasting.md"
FORECASTERS = sorted(name for name, entry in MODELS.items() if entry.task == "forecast")
TOLERANCE = 1e-5
_RUNS = {}


def forecaster_run(name, base):
  """(workdir, config) of `name` trained 2 steps on moving_digits_seq: 3 input frames of
  16x16x1, 3 predicted, 6 test sequences in eval batches of 4 (the last one padded)."""
  if name not in _RUNS:
    config = tiny_config(num_train_steps=2, log_every_steps=1, checkpoint_every_steps=1)
    config.model.name, config.model.convlstm_features, config.model.patch_size = name, (8,), 2
    d = config.data
    d.image_size, d.num_frames, d.input_frames, d.output_frames = 16, 6, 3, 3
    d.num_test_examples, config.eval_batch_size = 6, 4
    workdir = str(base / name)
    train.train_and_evaluate(config, workdir)
    _RUNS[name] = workdir, config
  return _RUNS[name]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("forecast_runs")


def _evaluation(config, workdir):
  """Evaluation's view of the latest checkpoint: (whole test sequences float32 (N, Tin+Tout,
  H, W, C), its clipped predictions (N, Tout, ...)) from its examples step."""
  from dcrn_jax import checkpoint, data, parallel, state  # pylint: disable=g-import-not-at-top
  mesh, _, plan, model = train._setup(config)  # pylint: disable=protected-access
  abstract = state.abstract_variables(model, plan.input_shape, parallel.replicated(mesh))
  _, variables = checkpoint.Checkpointer(workdir, read_only=True).restore_variables(None,
                                                                                  abstract)
  d = config.data
  examples_fn = forecast_evaluation.make_examples_fn(
      model, mesh, input_frames=d.input_frames, output_frames=d.output_frames,
      num_shown=config.eval_batch_size)
  sequences, predictions = [], []
  for batch in data.eval_batches(d, local_batch_size=config.eval_batch_size):
    shown = forecast_evaluation.shown_examples(jax.device_get(
        examples_fn(variables, parallel.to_global(batch, mesh))))
    sequences.append(np.concatenate([shown["inputs"], shown["targets"]], 1))
    predictions.append(shown["predictions"])
  return np.concatenate(sequences).astype(np.float32), np.concatenate(predictions)


def _pixels(x):
  return np.rint(np.asarray(x) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", FORECASTERS)
def test_every_forecaster_predicts_what_evaluation_predicts_and_exports_it(name, runs_dir,
                                                                           tmp_path):
  from dcrn_jax import ForecastPredictor, Predictor  # pylint: disable=g-import-not-at-top
  workdir, config = forecaster_run(name, runs_dir)
  sequences, expected = _evaluation(config, workdir)
  results = json.loads(pathlib.Path(workdir, "eval.json").read_text())  # What eval wrote.
  assert sequences.shape == (6, 6, 16, 16, 1)
  p = Predictor.from_workdir(workdir, batch_size=4)
  assert isinstance(p, ForecastPredictor) and p.step == 2 and p.input_shape == (3, 16, 16, 1)
  got = p.predict_arrays(sequences)  # Whole sequences: the first 3 frames are read.
  assert got.shape == (6, 3, 16, 16, 1) and got.dtype == np.float32
  np.testing.assert_allclose(np.clip(got, 0, 1), expected, atol=TOLERANCE, rtol=0)
  scores = forecast_evaluation.frame_metrics(got, sequences[:, 3:])
  np.testing.assert_allclose(np.asarray(scores["mse"]).mean(0), results["mse_per_step"],
                             rtol=TOLERANCE)
  np.testing.assert_allclose(np.asarray(scores["ssim"]).mean(), results["ssim"], rtol=TOLERANCE)
  np.testing.assert_array_equal(p.predict_arrays(sequences[2, :3]), got[2])
  # The same sequences as files of uint8 pixels, as a dataset of arrays stores them.
  for i, sequence in enumerate(sequences):
    np.save(tmp_path / f"seq{i}.npy", _pixels(sequence)[..., 0])
  forecasts = p.predict(str(tmp_path))
  assert [os.path.basename(f.path) for f in forecasts] == [f"seq{i}.npy" for i in range(6)]
  for f, want in zip(forecasts, got):
    np.testing.assert_allclose(f.predictions, want, atol=TOLERANCE, rtol=0)
    assert f.targets.shape == (3, 16, 16, 1)
  # The export: evaluation's forecast with a symbolic batch.
  meta = export.export_workdir(workdir, str(tmp_path / "export"), platforms=("cpu",))
  assert meta["input"]["shape"] == ["batch", 3, 16, 16, 1]
  assert meta["output"]["shape"] == ["batch", 3, 16, 16, 1] and meta["task"] == "forecast"
  exported = jax.export.deserialize(bytearray((tmp_path / "export" / "model.jax").read_bytes()))
  for batch in (1, 5):
    np.testing.assert_allclose(np.asarray(exported.call(sequences[:batch, :3])), got[:batch],
                               atol=TOLERANCE, rtol=0)


def test_clip_files_of_every_kind_give_the_same_frames(runs_dir, tmp_path):
  """.npy of uint8 or float frames, a lossless video, a GIF and a lossless WebP of one
  sequence read alike; a clip of only its inputs has no truth; a shorter one is refused."""
  from dcrn_jax import Predictor  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  p = Predictor.from_workdir(forecaster_run(FORECASTERS[0], runs_dir)[0])
  pixels = np.random.default_rng(0).integers(0, 256, (7, 16, 16, 1), dtype=np.uint8)
  np.save(tmp_path / "u8.npy", pixels)
  np.save(tmp_path / "f32.npy", pixels.astype(np.float32) / 255)
  video_files.write_video(str(tmp_path / "v.mkv"), pixels)
  images = [Image.fromarray(f[..., 0]) for f in pixels]
  for ext, extra in (("gif", {}), ("webp", {"lossless": True})):
    images[0].save(tmp_path / f"a.{ext}", save_all=True, append_images=images[1:], loop=0,
                   duration=100, **extra)
  inputs, targets = p.read(str(tmp_path / "u8.npy"))
  np.testing.assert_array_equal(_pixels(inputs), pixels[:3])
  np.testing.assert_array_equal(_pixels(targets), pixels[3:6])
  for name in ("f32.npy", "v.mkv", "a.gif", "a.webp"):
    other_inputs, other_targets = p.read(str(tmp_path / name))
    np.testing.assert_allclose(other_inputs, inputs, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(other_targets, targets, atol=1e-7, err_msg=name)
  np.save(tmp_path / "inputs_only.npy", pixels[:4])
  assert p.predict(str(tmp_path / "inputs_only.npy"))[0].targets is None
  np.save(tmp_path / "short.npy", pixels[:2])
  with pytest.raises(UserError, match="short.npy: 2 frame.*fewer than the 3 input frames"):
    p.predict([str(tmp_path / "u8.npy"), str(tmp_path / "short.npy")])
  np.save(tmp_path / "big.npy", np.zeros((4, 32, 32), np.uint8))
  with pytest.raises(UserError, match=r"big.npy: an array of shape \(4, 32, 32, 1\)"):
    p.read(str(tmp_path / "big.npy"))


def _predict_cli(*args):
  return subprocess.run([sys.executable, "-m", "dcrn_jax.predict", *args], cwd=ROOT,
                        capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        timeout=300)


def test_the_command_writes_animations_strips_and_frames_and_refuses_a_short_clip(runs_dir,
                                                                                  tmp_path):
  from dcrn_jax import Predictor  # pylint: disable=g-import-not-at-top
  workdir = forecaster_run(FORECASTERS[0], runs_dir)[0]
  pixels = np.random.default_rng(1).integers(0, 256, (6, 16, 16), dtype=np.uint8)
  np.save(tmp_path / "whole.npy", pixels)
  (tmp_path / "more").mkdir()
  np.save(tmp_path / "more" / "whole.npy", pixels[:3])  # Inputs only: no truth row.
  out = tmp_path / "frames"
  r = _predict_cli(f"--workdir={workdir}", f"--out={out}", "--format=webp",
                   str(tmp_path / "whole.npy"), str(tmp_path / "more"))
  assert r.returncode == 0, r.stderr[-3000:]
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 2 and "3 frames in -> 3 predicted; vs truth: mse" in lines[0]
  assert "vs truth" not in lines[1] and "wrote whole_2.webp" in lines[1]
  assert sorted(os.listdir(out)) == ["whole.npy", "whole.png", "whole.webp", "whole_2.npy",
                                     "whole_2.png", "whole_2.webp"]
  want = Predictor.from_workdir(workdir).predict_arrays(pixels[None, ..., None] / 255.0)[0]
  np.testing.assert_allclose(np.load(out / "whole.npy"), want, atol=TOLERANCE, rtol=0)
  with Image.open(out / "whole.webp") as animation:
    assert animation.n_frames == 6 and animation.width > 2 * animation.height  # Truth | forecast.
  with Image.open(out / "whole_2.webp") as animation:
    assert animation.n_frames == 6 and animation.width == animation.height
  with Image.open(out / "whole.png") as strip, Image.open(out / "whole_2.png") as no_truth:
    assert strip.width == no_truth.width and 3 * no_truth.height > 2 * strip.height
  np.save(tmp_path / "short.npy", pixels[:2])
  bad = _predict_cli(f"--workdir={workdir}", f"--out={tmp_path / 'none'}",
                     str(tmp_path / "whole.npy"), str(tmp_path / "short.npy"))
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith(
      f"error: {tmp_path / 'short.npy'}: 2 frame(s), fewer than the 3 input frames")
  assert not (tmp_path / "none").exists()


def guide_block() -> str:
  """The forecasting guide's python block that loads an export with JAX alone."""
  blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
  found = [b for b in blocks if "jax.export.deserialize" in b]
  assert len(found) == 1, f"{GUIDE} needs one python block loading an export"
  return found[0]


def test_the_guides_export_example_runs_where_only_jax_is_installed(runs_dir, tmp_path):
  """The guide's block in `python -I -S` over a site of jax, its requirements and
  flatbuffers (tests/test_export.py's): flax and dcrn_jax cannot be imported there."""
  from dcrn_jax import Predictor  # pylint: disable=g-import-not-at-top
  workdir = forecaster_run(FORECASTERS[0], runs_dir)[0]
  folder = tmp_path / "forecaster_export"
  export.export_workdir(workdir, str(folder))
  site = tmp_path / "site"
  site.mkdir()
  assert "flax" not in jax_only_site(site)
  x = np.random.default_rng(2).random((2, 3, 16, 16, 1), dtype=np.float32)
  np.save(tmp_path / "x.npy", x)
  block = guide_block().replace("runs/forecast_export", str(folder))
  script = (f"import sys\nsys.path.insert(0, {str(site)!r})\n" + block +
            f"\nimport numpy as np\nnp.save({str(tmp_path / 'y.npy')!r}, "
            f"np.asarray(forecast(np.load({str(tmp_path / 'x.npy')!r}))))\n"
            "for name in ('flax', 'dcrn_jax', 'optax', 'tensorflow'):\n"
            "  try:\n"
            "    __import__(name)\n"
            "    raise SystemExit(f'{name} could be imported')\n"
            "  except ModuleNotFoundError:\n"
            "    pass\n")
  r = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                     text=True, cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"),
                             Predictor.from_workdir(workdir).predict_arrays(x),
                             atol=TOLERANCE, rtol=0)
  meta = json.loads((folder / "model.json").read_text())
  assert meta["preprocessing"]["input_frames"] == 3 and meta["preprocessing"]["channels"] == "grey"


@pytest.fixture(scope="module")
def catalogue_runs(tmp_path_factory):
  import fault_catalogue  # pylint: disable=g-import-not-at-top
  base = str(tmp_path_factory.mktemp("forecast_faults"))
  return fault_catalogue, base, fault_catalogue.trained_forecaster(base)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_forecast_predict_fault_catalogue(catalogue_runs, index):
  fault_catalogue, base, runs = catalogue_runs
  assert len(fault_catalogue.FORECAST_PREDICT_FAULTS) == 3
  ok, detail = fault_catalogue.run_predict_fault(base, runs,
                                                 *fault_catalogue.FORECAST_PREDICT_FAULTS[index])
  assert ok, detail


@pytest.mark.parametrize("name", FORECASTERS)
def test_the_report_shows_every_forecaster_the_same_way(name, runs_dir, tmp_path):
  from dcrn_jax import report  # pylint: disable=g-import-not-at-top
  workdir, _ = forecaster_run(name, runs_dir)
  results = json.loads(pathlib.Path(workdir, "eval.json").read_text())
  lines = []
  page = pathlib.Path(report.build_report(workdir, str(tmp_path / "report"), num_examples=3,
                                          log=lines.append)).read_text()
  assert "<h2>Forecast quality" in page and "<h2>Forecasts" in page
  assert f"<td>{results['mse']:.4f}</td>" in page
  assert f"<td>{results['baseline_last_frame_mse']:.4f}</td>" in page
  assert page.count("<div class='card'>") == 3 and "Not shown" not in page, lines
  for i in range(3):
    with Image.open(tmp_path / "report" / f"forecast{i}.webp") as animation:
      assert animation.n_frames == 6  # 3 input frames, then 3 of truth | prediction.
    assert (tmp_path / "report" / f"forecast_strip{i}.png").is_file()


def test_normalised_frames_become_pictures_again():
  """A run that normalised its inputs: predict scales and normalises pixels as the sources do,
  and `to_pixels` undoes it for pictures."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict_forecast import model_input, to_pixels
  d = ml_collections.ConfigDict({"normalize_mean": (0.2, 0.5, 0.3),
                                 "normalize_std": (0.5, 0.25, 2.0)})
  pixels = np.random.default_rng(3).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
  x = model_input(pixels, d)
  np.testing.assert_allclose(x[..., 1], (pixels[..., 1] / 255 - 0.5) / 0.25, atol=1e-6)
  np.testing.assert_allclose(model_input(pixels / np.float32(255), d), x, atol=1e-6)
  np.testing.assert_allclose(to_pixels(x, d), pixels / 255, atol=1e-6)
  assert to_pixels(np.full((1, 1, 3), 9.0), d).max() == 1.0


@pytest.mark.slow  # A second process compiling the model for two devices.
def test_two_devices_forecast_what_one_does(runs_dir, tmp_path):
  from dcrn_jax import Predictor  # pylint: disable=g-import-not-at-top
  workdir = forecaster_run(FORECASTERS[0], runs_dir)[0]
  x = np.random.default_rng(4).random((5, 3, 16, 16, 1), dtype=np.float32)
  np.save(tmp_path / "x.npy", x)
  script = ("import numpy as np, jax\nfrom dcrn_jax import Predictor\n"
            f"p = Predictor.from_workdir({workdir!r}, batch_size=3)\n"
            "assert jax.device_count() == 2 and p.batch_size == 4, p.batch_size\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, p.predict_arrays(np.load("
            f"{str(tmp_path / 'x.npy')!r})))\n")
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                     env=dict(os.environ, JAX_PLATFORMS="cpu",
                              XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"),
                             Predictor.from_workdir(workdir).predict_arrays(x),
                             atol=TOLERANCE, rtol=0)
