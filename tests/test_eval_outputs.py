"""What an evaluation leaves on disk: eval.json's per-class figures (scikit-learn's, checked
against eval_predictions.jsonl), one predictions row per video for multi-view data, the same
file from 1 and 2 processes, and only scalars in metrics.jsonl."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from dcrn_jax import evaluation

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"--config={ROOT}/configs/video_gru.py"
TINY_MODEL = ["--config.model.stem_stride=2", "--config.model.conv_features=(4,8)",
              "--config.model.embed_dim=16", "--config.model.hidden_size=16",
              "--config.optim.warmup_steps=1", "--config.progress_bar=False"]


def run_main(*args, devices=1, timeout=300, wait=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  command = [sys.executable, "-m", "dcrn_jax.main", CONFIG, *args]
  if not wait:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def read_predictions(workdir):
  lines = pathlib.Path(workdir, "eval_predictions.jsonl").read_text().splitlines()
  return [json.loads(x) for x in lines]


def check_against_sklearn(results: dict, rows: list[dict], class_names) -> None:
  """Every per-class and averaged figure of eval.json equals scikit-learn's, recomputed from
  the predictions file (None in the file where scikit-learn's is NaN)."""
  y = np.array([r["label"] for r in rows])
  p = np.array([r["prediction"] for r in rows])
  classes = list(range(len(class_names)))
  report = sk_metrics.classification_report(y, p, labels=classes, target_names=class_names,
                                            zero_division=np.nan, output_dict=True)
  same = lambda ours, theirs: (ours is None and np.isnan(theirs)) or ours == pytest.approx(
      theirs, abs=1e-12)
  for name in class_names:
    ours, theirs = results["per_class"][name], report[name]
    for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
      assert same(ours[key], theirs[sk_key]), (name, key, ours, theirs)
    assert ours["support"] == theirs["support"]
  for ours, theirs in (("macro_precision", report["macro avg"]["precision"]),
                       ("macro_recall", report["macro avg"]["recall"]),
                       ("macro_f1", report["macro avg"]["f1-score"]),
                       ("weighted_f1", report["weighted avg"]["f1-score"])):
    assert same(results[ours], theirs), ours
  with warnings.catch_warnings():  # It warns when an absent class was predicted.
    warnings.simplefilter("ignore")
    assert results["mean_class_accuracy"] == pytest.approx(
        sk_metrics.balanced_accuracy_score(y, p), abs=1e-12)
  assert results["confusion_matrix"] == sk_metrics.confusion_matrix(y, p, labels=classes).tolist()
  assert results["accuracy"] == pytest.approx(np.mean(y == p), abs=1e-12)


def test_absent_and_never_predicted_classes_give_none_without_warnings():
  probs = np.array([[0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0], [0.1, 0.2, 0.7, 0], [0.6, 0.4, 0, 0]])
  labels = np.array([0, 1, 1, 0])  # Class 2 absent but predicted; class 3 absent, never.
  predictions = evaluation.combine_views(np.log(probs + 1e-30), labels, np.ones(4), np.arange(4))
  names = ["a", "b", "c", "d"]
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # Any warning fails the test.
    results = evaluation.metrics(predictions, names)
  assert results["per_class"]["c"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
  assert results["per_class"]["d"] == {"precision": None, "recall": None, "f1": None,
                                       "support": 0}
  assert results["mean_class_accuracy"] == 0.75  # (1 + 0.5) / 2: the present classes only.
  assert "NaN" not in json.dumps(results)
  records = evaluation.to_records(predictions, names)
  check_against_sklearn(results, records, names)
  assert [r["prediction_name"] for r in records] == ["a", "b", "c", "a"]


def test_a_class_name_list_of_the_wrong_length_is_a_programming_error():
  predictions = evaluation.combine_views(np.log(np.full((2, 3), 1 / 3)), np.array([0, 1]),
                                         np.ones(2), np.arange(2))
  with pytest.raises(ValueError, match="2 class names for 3 classes"):
    evaluation.metrics(predictions, ["a", "b"])


def test_a_video_scored_from_several_views_is_one_record_named_by_its_path():
  probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
  mask = np.array([1, 1, 1, 1, 1, 0])  # Two videos of 3 and 2 views, then a padding row.
  ids = np.array([1, 1, 1, 0, 0, -1])
  predictions = evaluation.combine_views(np.log(probs), np.array([0, 0, 0, 1, 1, 0]), mask, ids)
  records = evaluation.to_records(predictions, ["cat", "owl"], ("b/owl/x.mp4", "a/cat/y.mp4"))
  assert [(r["id"], r["index"], r["label_name"], r["views"]) for r in records] == [
      ("b/owl/x.mp4", 0, "owl", 2), ("a/cat/y.mp4", 1, "cat", 3)]
  np.testing.assert_allclose(records[1]["probabilities"], [1.3 / 3, 1.7 / 3], rtol=1e-5)
  assert records[1]["prediction_name"] == "owl"


# ------------------------------------------------ video folder: views, processes, absent class


def _write_clip(path, num_frames, level):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
    for i in range(num_frames):
      frame = np.full((24, 32, 3), (level + 7 * i) % 256, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
  """A model trained 2 steps on a video folder whose test split lacks the class 'dog'; eval
  scores 2 clips x 3 crops of each video. Returns (workdir, flags)."""
  pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")
  root = tmp_path_factory.mktemp("videos")
  for split, classes in (("train", ("cat", "dog", "owl")), ("test", ("cat", "owl"))):
    for k, name in enumerate(classes):
      (root / split / name).mkdir(parents=True)
      for j in range(3 if split == "test" else 2):
        _write_clip(root / split / name / f"v{j}.mp4", 10 + j, 40 * k + 10 * j)
  workdir = tmp_path_factory.mktemp("video_run") / "run"
  flags = [f"--config.data.video_dir={root}", "--config.data.name=video_folder",
           "--config.data.num_frames=3", "--config.data.image_size=16",
           "--config.data.num_test_clips=2", "--config.data.num_test_crops=3",
           "--config.batch_size=4", "--config.eval_batch_size=4", *TINY_MODEL]
  r = run_main(f"--workdir={workdir}", *flags, "--config.num_train_steps=2",
               "--config.log_every_steps=1", timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, flags


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.needs_tf  # video_folder decodes through tf.data.
@pytest.mark.slow  # About a minute: three processes import TensorFlow and decode videos.
def test_multi_view_eval_writes_one_row_per_video_the_same_from_two_processes(video_run):
  workdir, flags = video_run
  one = read_predictions(workdir)  # The final eval of training: 1 process.
  results = json.loads((workdir / "eval.json").read_text())
  assert len(one) == 6 and results["num_examples"] == 6 and results["num_views"] == 36
  assert sorted(r["id"] for r in one) == sorted(
      str(p) for p in (pathlib.Path(flags[0].split("=", 1)[1]) / "test").glob("*/*.mp4"))
  assert {r["label_name"] for r in one} == {"cat", "owl"} and all(r["views"] == 6 for r in one)
  assert all(pathlib.Path(r["id"]).parent.name == r["label_name"] for r in one)
  check_against_sklearn(results, one, ["cat", "dog", "owl"])
  assert results["per_class"]["dog"]["support"] == 0
  assert results["per_class"]["dog"]["recall"] is None

  port = _free_port()
  procs = [run_main(f"--workdir={workdir}", "--mode=eval", *flags,
                    f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                    f"--process_id={i}", wait=False) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  two = read_predictions(workdir)
  assert f"predictions: {workdir}/eval_predictions.jsonl" in outs[0]
  assert "predictions:" not in outs[1]  # Only process 0 prints and writes.
  assert [(r["id"], r["index"], r["label"], r["prediction"], r["views"]) for r in two] == [
      (r["id"], r["index"], r["label"], r["prediction"], r["views"]) for r in one]
  np.testing.assert_allclose([r["probabilities"] for r in two],
                             [r["probabilities"] for r in one], rtol=1e-4, atol=1e-6)
  records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  last = records[-1]
  assert last["split"] == "eval" and "macro_f1" in last and "mean_class_accuracy" in last
  assert "per_class" not in last and "confusion_matrix" not in last  # Scalars only.
