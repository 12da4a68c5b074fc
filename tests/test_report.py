"""python -m dcrn_jax.report on a tiny trained workdir: the files, the page's sections, the page
opened in headless Chromium, --mode=eval's per-class table, and one-line errors."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fault_catalogue
from test_eval_outputs import check_against_sklearn, read_predictions, run_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ["class_0", "class_1", "class_2", "class_3"]
TINY = ["--config.data.name=synthetic", "--config.data.synthetic_shape=(4,16,16,1)",
        "--config.data.synthetic_num_examples=64", "--config.data.synthetic_num_classes=4",
        "--config.model.stem_stride=2", "--config.model.conv_features=(4,8)",
        "--config.model.embed_dim=16", "--config.model.hidden_size=16",
        "--config.batch_size=8", "--config.eval_batch_size=16", "--config.optim.warmup_steps=1",
        "--config.num_train_steps=6", "--config.log_every_steps=2",
        "--config.checkpoint_every_steps=3", "--config.eval_every_steps=3",
        "--config.progress_bar=False"]


def run_report(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "dcrn_jax.report", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny run trained, evaluated (--mode=eval) and reported; returns (workdir, eval stdout).

  The final eval of training and --mode=eval score the same checkpoint: their files must agree.
  """
  workdir = tmp_path_factory.mktemp("report") / "run"
  r = run_main(f"--workdir={workdir}", *TINY)
  assert r.returncode == 0, r.stderr[-3000:]
  after_training = read_predictions(workdir), json.loads((workdir / "eval.json").read_text())
  r = run_main(f"--workdir={workdir}", "--mode=eval", *TINY)
  assert r.returncode == 0, r.stderr[-3000:]
  assert read_predictions(workdir) == after_training[0]
  assert json.loads((workdir / "eval.json").read_text()) == after_training[1]
  report = run_report(f"--workdir={workdir}", "--num_examples=6", "--profile_clips=40")
  assert report.returncode == 0, report.stderr[-3000:]
  assert report.stdout.strip().splitlines()[-1].startswith(f"wrote {workdir}/report/index.html")
  return workdir, r.stdout


def test_eval_prints_the_per_class_table_and_writes_predictions(run):
  workdir, out = run
  lines = out.splitlines()
  header = lines.index(next(x for x in lines if x.startswith("class ")))
  assert [x.split()[0] for x in lines[header + 1:header + 6]] == CLASSES + ["macro"]
  assert f"predictions: {workdir}/eval_predictions.jsonl" in lines
  rows = read_predictions(workdir)
  results = json.loads((workdir / "eval.json").read_text())
  assert len(rows) == 64 and [r["index"] for r in rows] == list(range(64))
  assert set(rows[0]) == {"id", "index", "label", "label_name", "prediction", "prediction_name",
                          "probabilities", "views"}
  for r in rows:
    assert r["id"] == r["index"] and r["label_name"] == CLASSES[r["label"]]
    assert r["prediction"] == int(np.argmax(r["probabilities"]))
    assert abs(sum(r["probabilities"]) - 1) < 1e-4
  check_against_sklearn(results, rows, CLASSES)
  logged = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["split"] for r in logged[-3:]] == ["train", "test", "eval"]
  for record in logged[-2:]:  # The scalars of eval.json, and only those.
    assert record["macro_f1"] == results["macro_f1"] and "mean_class_accuracy" in record
    assert "per_class" not in record and "confusion_matrix" not in record
  sessions = [json.loads(x) for x in (workdir / "sessions.jsonl").read_text().splitlines()]
  assert [(s["start_step"], s["end_step"], s["devices"]) for s in sessions] == [(0, 6, 1)]


def test_the_report_holds_every_section_and_its_files(run):
  workdir, _ = run
  folder = workdir / "report"
  page = (folder / "index.html").read_text()
  for heading in ("Run", "Training curves", "Per class (worst F1 first)", "Confusion matrix",
                  "Most-confused pairs", "When the evidence is", "Gallery"):
    assert f"<h2>{heading}" in page, heading
  assert "Not shown" not in page and "http" not in page and "<script" not in page
  assert page.count("class='card'") == 6
  linked = re.findall(r"src='([^']+)'", page)
  assert set(linked) == set(os.listdir(folder)) - {"index.html"}
  assert sum(name.endswith(".webp") for name in linked) == 6
  for name in CLASSES:
    assert name in page
  assert "cnn_gru" in page and "1 x cpu" in page
  per_class = page.index("Per class")
  f1 = [float(x) for x in re.findall(r"<td>([0-9.]+|-)</td><td>\d+</td></tr>",
                                     page[per_class:page.index("Confusion")]) if x != "-"]
  assert f1 == sorted(f1)  # Worst first.


def test_the_page_opens_in_headless_chromium(run, tmp_path, chromium):
  driver = chromium
  driver.get((run[0] / "report" / "index.html").as_uri())
  images = driver.execute_script(
      "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])")
  errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
  text = driver.find_element("tag name", "body").text
  shot = tmp_path / "page.png"
  driver.save_screenshot(str(shot))
  assert not errors, errors
  assert len(images) == 14  # Curves, temporal profile, 6 x (clip, evidence strip).
  assert all(complete and width > 0 for _, complete, width in images), images
  for name in CLASSES:
    assert name in text
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
  assert pixels.std() > 20 and (pixels < 128).mean() > 0.02  # Not a blank page.


@pytest.mark.parametrize("name,flags,expected", fault_catalogue.REPORT_FAULTS,
                         ids=[f[0] for f in fault_catalogue.REPORT_FAULTS])
def test_report_faults_are_one_line_errors(run, tmp_path, name, flags, expected):
  del name
  (tmp_path / "empty").mkdir()
  (tmp_path / "file").write_text("not a folder")
  paths = {"run": run[0], "empty": tmp_path / "empty", "file": tmp_path / "file"}
  r = run_report(*(f.format(**paths) for f in flags))
  assert r.returncode == 2, r.stderr
  assert r.stderr.strip().splitlines()[-1].startswith("error: ")
  assert expected in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "empty" / "report").exists()


def _record(index, label, prediction, confidence, classes=4):
  probs = [(1 - confidence) / (classes - 1)] * classes
  probs[prediction] = confidence
  return {"id": index, "index": index, "label": label, "prediction": prediction,
          "probabilities": probs}


def test_the_gallery_shows_the_most_confident_mistakes_first_then_each_class():
  from dcrn_jax.report import gallery  # pylint: disable=g-import-not-at-top
  records = [_record(0, 0, 1, 0.6), _record(1, 1, 2, 0.9), _record(2, 2, 2, 0.8),
             _record(3, 0, 0, 0.7), _record(4, 0, 0, 0.95), _record(5, 3, 0, 0.5),
             _record(6, 3, 3, 0.4)]
  assert [r["index"] for r in gallery.choose(records, 5)] == [1, 0, 5, 4, 2]
  assert [r["index"] for r in gallery.choose(records, 3)] == [1, 0, 4]
  assert [r["index"] for r in gallery.choose(records, 7)] == [1, 0, 5, 4, 2, 6, 3]
  assert [r["index"] for r in gallery.choose(records[:2], 5)] == [1, 0]


def test_images_get_a_still_and_a_saliency_overlay_without_time(tmp_path):
  from configs import default  # pylint: disable=g-import-not-at-top
  from dcrn_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from dcrn_jax.report import figures, gallery  # pylint: disable=g-import-not-at-top
  from test_explain import numpy_variables  # pylint: disable=g-import-not-at-top
  m = default.get_config().model
  m.name, m.conv_features = "cnn", (4,)
  model = create_model(m, num_classes=3, input_shape=(8, 8, 3))
  variables = numpy_variables(model, (8, 8, 3), seed=0)
  images = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  records = [dict(_record(i, i, 1, 0.5, classes=3), label_name="a", prediction_name="b")
             for i in range(2)]
  examples = gallery.explain_examples(model, variables, records,
                                      {i: (images[i], i) for i in range(2)}, ig_steps=4,
                                      fill="mean")
  assert [e.saliency.shape for e in examples] == [(8, 8), (8, 8)]
  assert examples[0].occlusion is None and examples[0].frame_mass is None
  still = figures.still(examples[0].inputs, str(tmp_path), "x.png")
  strip = figures.evidence_strip(examples[0].inputs, examples[0].saliency, str(tmp_path), "s.png")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  assert Image.open(tmp_path / still).size == (128, 128)
  assert Image.open(tmp_path / strip).size[0] > 50


def test_a_forecast_workdir_shows_its_pictures_and_names_what_is_missing(tmp_path):
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  from dcrn_jax import report  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  (tmp_path / "config.json").write_text(video_gru.get_config().to_json())
  (tmp_path / "metrics.jsonl").write_text("".join(
      json.dumps({"step": s, "split": "train", "loss": 1.0 / s, "learning_rate": 1e-3}) + "\n"
      for s in (1, 2, 3)))
  (tmp_path / "eval.json").write_text(json.dumps(
      {"step": 3, "num_examples": 4, "loss": 0.5, "mse_per_step": [0.1, 0.2, 0.4]}))
  Image.new("RGB", (40, 20), "red").save(tmp_path / "forecast_examples.png")
  lines = []
  path = report.build_report(str(tmp_path), log=lines.append)
  page = pathlib.Path(path).read_text()
  assert "<h2>Forecasts" in page and "forecast_examples.png" in page and "per_step.png" in page
  assert "per-class metrics: eval.json has none" in page
  assert "no eval_predictions.jsonl" in page and "<h2>Gallery" not in page
  assert {"curves.png", "per_step.png", "forecast_examples.png"} <= set(
      os.listdir(tmp_path / "report"))
  assert lines[-1].startswith(f"wrote {tmp_path}/report/index.html")


def test_without_its_checkpoint_the_report_keeps_the_rest_and_says_why(run, tmp_path):
  from dcrn_jax import report  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "run"
  shutil.copytree(run[0], copy, ignore=shutil.ignore_patterns("report", "checkpoints"))
  lines = []
  page = pathlib.Path(report.build_report(str(copy), log=lines.append)).read_text()
  assert "<h2>Confusion matrix" in page and "<h2>Gallery" not in page
  assert "gallery and per-frame importance: no checkpoints in" in page
  assert any(x.startswith("note: not shown: gallery") for x in lines)


def test_each_example_is_read_once_from_its_first_view(monkeypatch):
  """Videos of 3 views in batches of 4 rows: a video's views span two batches."""
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from dcrn_jax.report import gallery  # pylint: disable=g-import-not-at-top
  ids = np.repeat(np.arange(4), 3)  # 12 rows: videos 0..3, 3 views each.
  batches = [{"example_id": ids[lo:lo + 4], "mask": np.ones(4), "label": ids[lo:lo + 4] % 2,
              "inputs": (ids[lo:lo + 4] * 10 + np.arange(lo, lo + 4) % 3)[:, None]}
             for lo in range(0, 12, 4)]
  monkeypatch.setattr(gallery.data, "eval_batches", lambda *a, **k: iter(batches))
  profiled = []
  found = gallery.read_inputs(SimpleNamespace(data=None, eval_batch_size=4), {1, 3},
                              profile_count=10, on_profile_batch=lambda x, y: profiled.extend(x))
  assert {k: (int(v[0][0]), v[1]) for k, v in found.items()} == {1: (10, 1), 3: (30, 1)}
  assert [int(x[0]) for x in profiled] == [0, 10, 20, 30]  # View 0 of each video, once.


def test_files_of_two_evaluations_are_refused_and_nothing_is_left(run, tmp_path):
  from dcrn_jax import UserError, report  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "run"
  shutil.copytree(run[0], copy, ignore=shutil.ignore_patterns("report", "checkpoints"))
  lines = (copy / "eval_predictions.jsonl").read_text().splitlines()
  (copy / "eval_predictions.jsonl").write_text("\n".join(lines[:-1]) + "\n")
  with pytest.raises(UserError, match="come from different evaluations"):
    report.build_report(str(copy), log=lambda _: None)
  assert not any(name.startswith("report") for name in os.listdir(copy))  # No report.building.
