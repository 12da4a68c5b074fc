"""Predict (dcrn_jax/predict/, predict_cli.py, data/files.py): a trained workdir -> predictions
on files equal to evaluation's, the Python API, and one clear line for every bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dcrn_jax import UserError, tasks, train
from dcrn_jax.data import files
from dcrn_jax.media import clips, video_files

# TFDS, tf.data or video sources throughout; predictions are compared with evaluation's.
pytestmark = [pytest.mark.needs_tf, pytest.mark.usefixtures("highest_precision")]

av = pytest.importorskip("av", reason="PyAV is in the test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def video_predictor(video_run):
  from dcrn_jax import Predictor  # pylint: disable=g-import-not-at-top
  return Predictor.from_workdir(video_run[0])


@pytest.fixture(scope="module")
def image_predictor(image_run):
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  return Predictor.from_workdir(image_run[0], batch_size=5)


def _eval_predictions(config, workdir):
  """Evaluation's per-example predictions of the latest checkpoint (train.evaluate's path)."""
  from dcrn_jax import checkpoint, data, parallel, state  # pylint: disable=g-import-not-at-top
  from dcrn_jax.models import create_model  # pylint: disable=g-import-not-at-top
  mesh = parallel.create_mesh()
  info = data.get_info(config.data)
  model = create_model(config.model, num_classes=info.num_classes, input_shape=info.input_shape)
  abstract = state.abstract_variables(model, info.input_shape, parallel.replicated(mesh))
  _, variables = checkpoint.Checkpointer(workdir, read_only=True).restore_variables(None, abstract)
  plan = tasks.for_config(config).plan(info)
  return info, train.make_evaluator(model, info, config, mesh, plan)(variables)[1]


def test_predict_on_the_files_of_a_video_folder_equals_evaluation(video_run, video_predictor):
  workdir, config, _ = video_run
  info, expected = _eval_predictions(config, workdir)
  assert info.eval_views == 6 and len(info.eval_ids) == 5
  got = video_predictor.predict(list(info.eval_ids))
  assert [g.path for g in got] == list(info.eval_ids)
  for example_id, probabilities in zip(expected.example_id, expected.probabilities):
    g = got[example_id]
    assert g.views == 6 and not g.error
    np.testing.assert_allclose(g.probabilities, probabilities, atol=1e-5, rtol=0)
    assert g.label == info.class_names[int(np.argmax(probabilities))]
  short = [g for g in got if g.path.endswith("short.mp4")][0]
  assert "3 frames, fewer than a clip's 7" in short.note
  assert all(g.note == "" for g in got if g is not short)


def test_predict_on_image_files_equals_evaluation(image_run, image_predictor, tmp_path):
  from dcrn_jax.data import to_files  # pylint: disable=g-import-not-at-top
  workdir, config = image_run
  written = to_files.write_examples(workdir, str(tmp_path / "images"), num=100)
  assert len(written) == 13 and all(p.endswith(".png") for p in written)
  info, expected = _eval_predictions(config, workdir)
  got = {os.path.basename(g.path): g for g in image_predictor.predict(str(tmp_path / "images"))}
  assert len(got) == 13
  for example_id, label, probabilities in zip(expected.example_id, expected.label,
                                              expected.probabilities):
    g = got[f"{example_id:05d}.png"]
    assert os.path.basename(os.path.dirname(g.path)) == to_files.folder_name(
        info.class_names[label])
    np.testing.assert_allclose(g.probabilities, probabilities, atol=1e-5, rtol=0)
    assert g.label == info.class_names[int(np.argmax(probabilities))] and g.views == 1


def test_predict_on_clips_of_a_stored_clip_dataset_equals_evaluation(clip_run, tmp_path):
  """The default config's data path: moving_digits clips written by to_files (lossless .mkv)
  and predicted by the command give evaluation's probabilities."""
  from dcrn_jax.data import to_files  # pylint: disable=g-import-not-at-top
  workdir, config = clip_run
  written = to_files.write_examples(workdir, str(tmp_path / "clips"), num=100)
  assert len(written) == 9 and all(p.endswith(".mkv") for p in written)
  info, expected = _eval_predictions(config, workdir)
  out = tmp_path / "p.jsonl"
  assert _predict(workdir, [str(tmp_path / "clips")], output=str(out), top_k=100) == {
      "predicted": 9, "skipped": 0, "files": 9}
  got = {os.path.basename(r["path"]): r
         for r in map(json.loads, out.read_text().splitlines())}
  for example_id, label, probabilities in zip(expected.example_id, expected.label,
                                              expected.probabilities):
    record = got[f"{example_id:05d}.mkv"]
    assert os.path.basename(os.path.dirname(record["path"])) == info.class_names[label]
    top = {c["class"]: c["probability"] for c in record["top_k"]}
    np.testing.assert_allclose([top[n] for n in info.class_names], probabilities, atol=1e-5,
                               rtol=0)
    assert record["top_k"][0]["class"] == info.class_names[int(np.argmax(probabilities))]
    assert record["views"] == 1 and record["note"] == ""


def test_to_files_refuses_what_it_cannot_write(video_run, tmp_path):
  from dcrn_jax.data import to_files  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="--num=0 must be 1 or more"):
    to_files.write_examples(video_run[0], str(tmp_path), 0)
  with pytest.raises(UserError, match="eval videos of this run are files already: .*test"):
    to_files.write_examples(video_run[0], str(tmp_path), 4)


def test_one_decode_gives_every_eval_view_as_the_eval_pipeline_cuts_it(video_run):
  path = os.path.join(video_run[2], "test", "right", "v1.mp4")
  count, height, width = video_files.probe(path)
  spec = clips.ClipSpec(num_frames=4, stride=2, size=16, resize_short=20, num_test_clips=2,
                        num_test_crops=3)
  views, ok = video_files.eval_clips(path, count, height, width, spec)
  assert ok and views.shape == (6, 4, 16, 16, 3)
  for v in range(6):
    indices, hw, top_left, flip = clips.eval_view(count, height, width, spec, v)
    one, _ = video_files.decode_clip(path, indices, hw, top_left, spec.size, flip)
    np.testing.assert_array_equal(views[v], one)
  grey, _ = video_files.eval_clips(path, count, height, width, spec, channels=1)
  assert grey.shape == (6, 4, 16, 16, 1) and 0 < np.abs(grey[..., 0] - views.mean(-1)).mean() < 8


def test_images_are_resized_to_cover_then_centre_cropped(tmp_path):
  pixels = np.zeros((60, 20, 3), np.uint8)  # Resized to 30x10, rows 10-20 kept: the middle.
  pixels[:15], pixels[15:45], pixels[45:] = 50, 200, 100
  files.write_image(str(tmp_path / "tall.png"), pixels)
  out = files.read_image(str(tmp_path / "tall.png"), 10, 10, 3)
  assert out.shape == (10, 10, 3) and np.all(np.abs(out.astype(int) - 200) <= 2)
  grey = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)  # Its own size: untouched.
  files.write_image(str(tmp_path / "g.png"), grey)
  np.testing.assert_array_equal(files.read_image(str(tmp_path / "g.png"), 10, 10, 1), grey)


def test_the_guides_python_example_runs(video_run, capsys):
  import pathlib  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  guide = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides" / "trained-model.md"
  blocks = [b for b in re.findall(r"```python\n(.*?)```", guide.read_text(), re.S)
            if "Predictor.from_workdir" in b]
  assert len(blocks) == 1, f"{guide} needs one python block using Predictor.from_workdir"
  workdir, _, video_dir = video_run
  folder = os.path.join(video_dir, "test", "right")
  code = blocks[0].replace('"runs/video_gru"', repr(workdir)).replace('"runs/clips"',
                                                                      repr(folder))
  exec(compile(code, str(guide), "exec"), {})  # pylint: disable=exec-used
  lines = capsys.readouterr().out.strip().splitlines()
  assert [line.split()[0] for line in lines] == [os.path.join(folder, f"v{j}.mp4")
                                                 for j in range(2)]
  assert all(line.split()[1] in ("left", "right") and "[('" in line for line in lines)


def test_predict_arrays_averages_views_and_checks_shapes(video_predictor):
  p = video_predictor
  rng = np.random.default_rng(0)
  x = rng.random((3, 6, *p.input_shape), dtype=np.float32)
  views = p.predict_arrays(x)
  rows = p.predict_arrays(x.reshape(18, *p.input_shape)).probabilities.reshape(3, 6, -1)
  np.testing.assert_allclose(views.probabilities, rows.mean(1), atol=1e-12)
  assert views.labels == tuple(p.class_names[i] for i in rows.mean(1).argmax(1))
  with pytest.raises(UserError, match=r"this model takes \(N, \*\(4, 16, 16, 3\)\)"):
    p.predict_arrays(np.zeros((2, 4, 16, 16, 1)))
  video = os.path.join(p.config.data.video_dir, "test", "left", "v0.mp4")
  assert p.preprocess(video).shape == (6, 4, 16, 16, 3)
  # Every batch, the last partial one too, is padded to batch_size rows: one compilation.
  p.predict_arrays(x[:1, :1])
  p.predict([video, os.path.join(p.config.data.video_dir, "test")])
  assert p._log_probs_fn._cache_size() == 1  # pylint: disable=protected-access
  # uint8 pixels are scaled inside the jitted step; floats are taken as model inputs.
  pixels = p.pixels(video)
  assert pixels.dtype == np.uint8 and pixels.shape == (6, 4, 16, 16, 3)
  np.testing.assert_allclose(p.predict_arrays(pixels[None]).probabilities,
                             p.predict_arrays(p.preprocess(video)[None]).probabilities,
                             atol=1e-6, rtol=0)


# ------------------------------------------------------------------ the command and bad input


def _predict(workdir, paths, **kwargs):
  from dcrn_jax import predict_cli  # pylint: disable=g-import-not-at-top
  return predict_cli.predict_command(workdir, paths, **kwargs)


def test_unreadable_and_wrong_kind_files_are_skipped_counted_and_the_rest_predicted(
    video_run, tmp_path, capsys):
  workdir, _, video_dir = video_run
  (tmp_path / "junk.mp4").write_bytes(b"not a video")
  (tmp_path / "empty.avi").write_bytes(b"")
  files.write_image(str(tmp_path / "still.png"), np.zeros((8, 8, 3), np.uint8))
  good = os.path.join(video_dir, "test", "left")
  out = tmp_path / "out.jsonl"
  summary = _predict(workdir, [good, str(tmp_path)], output=str(out), top_k=9)
  assert summary == {"predicted": 3, "skipped": 3, "files": 6}
  err = capsys.readouterr().err
  assert "warning: skipping " + str(tmp_path / "junk.mp4") + ": not a readable video" in err
  assert "empty.avi: not a readable video (empty file)" in err
  assert "still.png: an image, but this model takes clips of 4 frames" in err
  assert "predicted 3 of 6 file(s)" in err and "skipped 3" in err
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [os.path.basename(r["path"]) for r in records] == [
      "short.mp4", "v0.mp4", "v1.mp4", "empty.avi", "junk.mp4", "still.png"]
  assert len(records[1]["top_k"]) == 2  # top_k is capped at the number of classes.
  assert abs(sum(c["probability"] for c in records[1]["top_k"]) - 1) < 1e-6
  assert "fewer than a clip" in records[0]["note"] and records[4]["top_k"] == []
  assert not os.path.exists(str(out) + ".tmp")


def test_csv_output_and_printed_lines(video_run, tmp_path, capsys):
  workdir, _, video_dir = video_run
  path = os.path.join(video_dir, "test", "right", "v0.mp4")
  _predict(workdir, [path], output=str(tmp_path / "p.csv"), top_k=1)
  rows = list(csv.reader(open(tmp_path / "p.csv", encoding="utf-8")))
  assert rows[0] == ["path", "class_1", "probability_1", "views", "note", "error"]
  assert rows[1][0] == path and rows[1][1] in ("left", "right") and rows[1][3] == "6"
  capsys.readouterr()
  _predict(workdir, [path], top_k=2)
  line = capsys.readouterr().out.strip()
  assert line.startswith(path + "  ") and "left 0." in line and "right 0." in line


def test_nothing_readable_is_an_error_and_writes_nothing(video_run, tmp_path):
  (tmp_path / "a.mp4").write_bytes(b"junk")
  with pytest.raises(UserError, match=r"none of the 1 file\(s\) could be read"):
    _predict(video_run[0], [str(tmp_path / "a.mp4")], output=str(tmp_path / "o.jsonl"))
  assert sorted(os.listdir(tmp_path)) == ["a.mp4"]


def test_a_video_given_to_an_image_model_is_skipped_with_the_reason(image_run, video_run, capsys):
  video = os.path.join(video_run[2], "test", "left", "v0.mp4")
  with pytest.raises(UserError, match="none of the 1"):
    _predict(image_run[0], [video])
  assert "a video, but this model takes single images of shape (28, 28, 1)" in \
      capsys.readouterr().err


def _copy_run(workdir, tmp_path, drop):
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  target = copy / drop
  if target.is_dir():
    shutil.rmtree(target)
  else:
    target.unlink()
  return str(copy)


@pytest.mark.parametrize("drop, message", [
    ("checkpoints", "no checkpoints in"), ("config.json", "config.json is missing"),
    ("label_map.json", "label_map.json is missing")])
def test_an_incomplete_workdir_is_one_clear_error(video_run, tmp_path, drop, message):
  workdir = _copy_run(video_run[0], tmp_path, drop)
  with pytest.raises(UserError, match=message):
    _predict(workdir, [video_run[2]])


@pytest.mark.parametrize("task, message", [
    ("segment", "task='segment': predict and export serve classifiers"),
    ("forecast", "names model.name='cnn_gru', a model for task='classify', but task='forecast'"),
])
def test_a_run_of_another_task_is_refused(video_run, tmp_path, task, message):
  workdir = _copy_run(video_run[0], tmp_path, "label_map.json")  # A forecast run has none.
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  config["task"] = task
  (tmp_path / "run" / "config.json").write_text(json.dumps(config))
  with pytest.raises(UserError, match=message):
    _predict(workdir, [video_run[2]])


@pytest.mark.parametrize("kwargs, message", [
    ({"step": "7"}, r"no checkpoint for step 7 .*available steps: \[1, 2\]"),
    ({"step": "best"}, "this run ranked no checkpoints .it was trained without best_metric"),
    ({"step": "last"}, "give 'latest', 'best' or a checkpoint's step number"),
    ({"top_k": 0}, "--top_k=0 must be 1 or more"),
    ({"batch_size": -1}, "--batch_size=-1 must be 0 .automatic. or more"),
    ({"threads": -2}, "--threads=-2 must be 0 .automatic. or more"),
    ({"output": "p.txt"}, "give a .jsonl or .csv file"),
])
def test_bad_flags_are_one_clear_error(video_run, kwargs, message):
  with pytest.raises(UserError, match=message):
    _predict(video_run[0], [video_run[2]], **kwargs)


def test_missing_paths_and_workdirs_are_one_clear_error(video_run, tmp_path):
  with pytest.raises(UserError, match="nope.mp4 does not exist"):
    _predict(video_run[0], [video_run[2], str(tmp_path / "nope.mp4")])
  with pytest.raises(UserError, match="no video or image file in"):
    _predict(video_run[0], [str(tmp_path)])
  with pytest.raises(UserError, match="--workdir .*absent does not exist"):
    _predict(str(tmp_path / "absent"), [video_run[2]])


def test_an_earlier_step_is_restored_by_number(video_run, video_predictor):
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  first = Predictor.from_workdir(video_run[0], step=1)
  x = np.random.default_rng(2).random((2, *first.input_shape), dtype=np.float32)
  assert first.step == 1 and video_predictor.step == 2
  assert not np.allclose(first.predict_arrays(x).probabilities,
                         video_predictor.predict_arrays(x).probabilities, atol=1e-7)


def test_progress_line_shows_files_rate_and_eta():
  import io  # pylint: disable=g-import-not-at-top
  from dcrn_jax import predict_cli  # pylint: disable=g-import-not-at-top

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  live = Terminal()
  progress = predict_cli._Progress(4, live)  # pylint: disable=protected-access
  progress.step()
  progress.step()
  progress.clear()
  shown = live.getvalue().split("\r")
  assert shown[1].startswith("1/4 files | ") and " files/s | ETA " in shown[1]
  assert shown[2].startswith("2/4 files | ") and shown[-1] == "\033[K"
  piped = io.StringIO()  # Not a terminal: a plain line now and then, never a carriage return.
  progress = predict_cli._Progress(4, piped)  # pylint: disable=protected-access
  progress._shown -= predict_cli._QUIET_PROGRESS_S  # pylint: disable=protected-access
  progress.step()
  progress.step()
  progress.clear()
  assert piped.getvalue().startswith("1/4 files | ") and piped.getvalue().count("\n") == 1
  assert "\r" not in piped.getvalue()


def _run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "dcrn_jax.predict", *args], capture_output=True,
                        text=True, env=env, timeout=300,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_command_exits_0_with_skips_and_2_when_nothing_was_read(video_run, tmp_path):
  workdir, _, video_dir = video_run
  (tmp_path / "bad.mp4").write_bytes(b"junk")
  ok = _run_cli(f"--workdir={workdir}", os.path.join(video_dir, "test", "right"),
                str(tmp_path / "bad.mp4"))
  assert ok.returncode == 0, ok.stderr
  assert len(ok.stdout.strip().splitlines()) == 2 and "Traceback" not in ok.stderr
  assert "warning: skipping" in ok.stderr and "predicted 2 of 3" in ok.stderr
  none = _run_cli(f"--workdir={workdir}", str(tmp_path / "bad.mp4"))
  assert none.returncode == 2 and "Traceback" not in none.stderr
  assert none.stderr.strip().splitlines()[-1].startswith("error: none of the 1 file(s)")


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import fault_catalogue  # pylint: disable=g-import-not-at-top
  base = str(tmp_path_factory.mktemp("predict_faults"))
  return fault_catalogue, base, fault_catalogue.trained_for_predict(base)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(13))
def test_predict_and_export_fault_catalogue(catalogue_run, index):
  fault_catalogue, base, trained = catalogue_run
  assert len(fault_catalogue.PREDICT_FAULTS) == 13
  ok, detail = fault_catalogue.run_predict_fault(base, trained,
                                                 *fault_catalogue.PREDICT_FAULTS[index])
  assert ok, detail
