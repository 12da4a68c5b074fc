"""Streaming (dcrn_jax/models/streaming.py, dcrn_jax/stream.py): the per-frame step equals the
whole-clip model after every frame; the window policies do what their definitions say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model
from dcrn_jax.models import streaming

T, H, C = 5, 16, 3


def _model_config(name, **over):
  from configs import default  # pylint: disable=g-import-not-at-top
  m = default.get_config().model
  m.unlock()
  m.name = name
  m.conv_features, m.embed_dim, m.hidden_size, m.num_layers = (4, 8), 16, 8, 2
  m.convlstm_features, m.patch_size = (4, 4), 1
  for k, v in over.items():
    m[k] = v
  return m


def _build(name, **over):
  model = create_model(_model_config(name, **over), num_classes=4, input_shape=(T, H, H, C),
                       output_frames=2)
  clips = jax.random.uniform(jax.random.PRNGKey(1), (2, T, H, H, C))
  variables = model.init(jax.random.PRNGKey(0), clips)
  return model, variables, clips


_SLOW = pytest.mark.slow  # Each case compiles its model three times (~10-20 s on 2 CPU cores).
RECURRENT = [("cnn_gru", {}), pytest.param("cnn_lstm", {}, marks=_SLOW),
             pytest.param("convlstm", {}, marks=_SLOW),
             pytest.param("convlstm", {"batch_norm": True}, marks=_SLOW),
             pytest.param("convlstm_autoregressive", {}, marks=_SLOW),
             pytest.param("convlstm_autoregressive", {"patch_size": 2}, marks=_SLOW)]


@pytest.mark.parametrize("name,over", RECURRENT)
def test_step_equals_whole_clip_after_every_frame(name, over):
  model, variables, clips = _build(name, **over)
  step = jax.jit(streaming.make_step(model))
  carry = streaming.initial_carry(model, variables, 2, clips.shape[2:])
  with jax.default_matmul_precision("highest"):
    for t in range(1, T + 1):
      carry, out = step(variables, carry, clips[:, t - 1])
      if t not in (2, T):  # Each cut compiles the whole model once more: two suffice.
        continue
      whole = model.apply(variables, clips[:, :t])
      if name == "convlstm_autoregressive":
        whole = whole[:, t - 1]  # The prediction of frame t + 1 (the first t steps read truth).
      np.testing.assert_allclose(out, whole, atol=1e-5, rtol=0, err_msg=f"frame {t}")


@pytest.mark.parametrize("name", ["cnn", "row_lstm", "convlstm_forecaster"])
def test_models_without_a_time_recurrence_are_refused(name):
  shape = (H, H, C) if name in ("cnn", "row_lstm") else (T, H, H, C)
  model = create_model(_model_config(name), num_classes=4, input_shape=shape, output_frames=2)
  with pytest.raises(UserError, match="cannot run one frame at a time") as e:
    streaming.make_step(model)
  assert "\n" not in str(e.value)


def _frame_stream(window, states=2):
  from configs import default  # pylint: disable=g-import-not-at-top
  from dcrn_jax import stream as stream_lib  # pylint: disable=g-import-not-at-top
  model, variables, _ = _build("cnn_gru")
  data = default.get_config().data
  data.normalize_mean, data.normalize_std = (0.4,), (0.2,)  # The stream normalises too.
  pre = stream_lib.FramePreprocessor(size=H, resize_short=H, channels=C, data_config=data)
  s = stream_lib.FrameStream(model, variables, preprocessor=pre, class_names="abcd",
                             clip_frames=T, window=window, states=states)
  frames = np.random.default_rng(0).integers(0, 256, (2 * T + 3, H, H, C), dtype=np.uint8)
  pixels = np.stack([pre(f) for f in frames])
  assert pixels.dtype == np.uint8  # Scaled on the device, inside the stream's jitted step.
  inputs = (pixels.astype(np.float32) / np.float32(255) - np.float32(0.4)) / np.float32(0.2)
  return model, variables, s, frames, inputs


def _clip_probabilities(model, variables, inputs, first, last):
  """Softmax of the model's logits on 0-based frames first..last-1 (one clip)."""
  logits = model.apply(variables, jnp.asarray(inputs[None, first:last]))[0]
  return np.asarray(jax.nn.softmax(logits.astype(jnp.float32)))


@pytest.mark.parametrize("window,states", [pytest.param("grow", 0, marks=_SLOW),
                                           pytest.param("reset", 0, marks=_SLOW),
                                           ("staggered", 2),
                                           pytest.param("staggered", 3, marks=_SLOW)])
def test_window_policies_answer_from_the_clips_their_definitions_name(window, states):
  model, variables, s, frames, inputs = _frame_stream(window, states)
  checked = set()
  with jax.default_matmul_precision("highest"):
    for n, frame in enumerate(frames, 1):
      out = s.push(frame)
      assert out.frame == n
      if window == "grow":
        want = n
      elif window == "reset":
        want = (n - 1) % T + 1
      else:
        k = states
        starts = [j * T // k for j in range(k)]
        want = max((n - a - 1) % T + 1 for a in starts if n > a)
        if n > T:  # Every state runs: its answer comes from T - ceil(T/K) + 1 .. T frames.
          assert T - -(-T // k) + 1 <= want <= T and want >= T / 2
      assert out.frames_seen == want, n
      if n in (1, T + 1, 2 * T + 3) or (window != "grow" and want not in checked):
        checked.add(want)
        np.testing.assert_allclose(out.probabilities,
                                   _clip_probabilities(model, variables, inputs, n - want, n),
                                   atol=1e-5)
  s.reset()
  assert s.push(frames[0]).frames_seen == 1 and s.frames == 1


def test_frames_of_any_size_are_resized_and_centre_cropped_as_evaluation_does():
  from configs import default  # pylint: disable=g-import-not-at-top
  from dcrn_jax import stream as stream_lib  # pylint: disable=g-import-not-at-top
  data = default.get_config().data
  pre = stream_lib.FramePreprocessor(size=4, resize_short=4, channels=3, data_config=data)
  frame = np.zeros((4, 8, 3), np.uint8)
  frame[:, 2:6] = 200  # The centre 4 columns survive the crop.
  np.testing.assert_array_equal(pre(frame), frame[:, 2:6])  # Pixels: scaled on the device.
  wide = np.repeat(np.repeat(frame, 3, 0), 3, 1)  # 12 x 24: resized to 4 x 8 first.
  assert pre(wide).shape == (4, 4, 3)
  assert abs(float(pre(wide).mean()) - float(pre(frame).mean())) < 0.05 * 255
  with pytest.raises(UserError, match="push decoded frames"):
    pre(np.zeros((4, 4, 2), np.uint8))


# ---------------------------------------------------------------- the command line


def _video(path, frames=12, seed=3):
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  pixels = np.random.default_rng(seed).integers(0, 256, (frames, 24, 32, 3), dtype=np.uint8)
  video_files.write_video(str(path), pixels, lossless=False)
  return str(path)


def test_the_command_prints_one_row_per_frame_and_the_latency_line(video_run, tmp_path):
  import os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  workdir = video_run[0]
  video = _video(tmp_path / "live.mp4")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-m", "dcrn_jax.predict", f"--workdir={workdir}",
                         f"--stream={video}", "--top_k=2"], capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300, cwd=root)
  assert done.returncode == 0, done.stderr
  rows = done.stdout.strip().splitlines()
  assert [r.split()[1] for r in rows] == [str(i) for i in range(1, 13)]
  assert all(r.count(" 0.") + r.count(" 1.0") == 2 for r in rows), rows
  assert "scored 12 frames at" in done.stderr and "latency median" in done.stderr, done.stderr


def test_jsonl_csv_and_plot_outputs_and_the_frames_each_answer_has_seen(video_run, tmp_path):
  import io, json  # pylint: disable=g-import-not-at-top,multiple-imports
  from dcrn_jax import stream_cli  # pylint: disable=g-import-not-at-top
  workdir = video_run[0]
  video = _video(tmp_path / "live.mp4", frames=6)
  err = io.StringIO()
  summary = stream_cli.stream_command(workdir, video, output=str(tmp_path / "f.jsonl"),
                                      plot=str(tmp_path / "p.png"), top_k=2, err=err)
  rows = [json.loads(line) for line in open(tmp_path / "f.jsonl")]
  assert summary["frames"] == 6 and [r["frame"] for r in rows] == list(range(1, 7))
  assert [r["frames_seen"] for r in rows] == list(range(1, 7))
  assert (tmp_path / "p.png").stat().st_size > 1000 and "latency median" in err.getvalue()
  stream_cli.stream_command(workdir, video, output=str(tmp_path / "f.csv"), top_k=2,
                            window="reset", err=io.StringIO())
  lines = open(tmp_path / "f.csv").read().splitlines()
  assert lines[0].startswith("frame,frames_seen,latency_ms,class_1") and len(lines) == 7
  assert [int(r.split(",")[1]) for r in lines[1:]] == [1, 2, 3, 4, 1, 2]  # T = 4


def test_a_truncated_video_stops_with_one_line_saying_how_many_frames_were_scored(video_run,
                                                                                tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  from dcrn_jax import stream_cli  # pylint: disable=g-import-not-at-top
  video = _video(tmp_path / "cut.mkv", frames=30)  # Matroska: its header comes first.
  data = open(video, "rb").read()
  open(video, "wb").write(data[:len(data) // 2])
  out = io.StringIO()
  with pytest.raises(UserError, match=r"breaks off .* (\d+) frame\(s\) were scored") as e:
    stream_cli.stream_command(video_run[0], video, err=io.StringIO(), out=out)
  scored = int(str(e.value).rsplit("; ", 1)[1].split()[0])
  assert 0 < scored < 30 and len(out.getvalue().splitlines()) == scored
  assert "\n" not in str(e.value)
  mp4 = _video(tmp_path / "cut.mp4", frames=30)  # MP4: its index comes last; nothing decodes.
  open(mp4, "wb").write(open(mp4, "rb").read()[:2000])
  with pytest.raises(UserError, match="0 frames were scored"):
    stream_cli.stream_command(video_run[0], mp4, err=io.StringIO(), out=io.StringIO())


def test_an_image_model_is_refused_in_one_line(image_run, tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  from dcrn_jax import stream_cli  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="cannot run one frame at a time") as e:
    stream_cli.stream_command(image_run[0], _video(tmp_path / "v.mp4"), err=io.StringIO())
  assert "\n" not in str(e.value)


# ---------------------------------------------------------------- export


STREAM_LOADER = '''
import json, pathlib
import jax, numpy as np

folder = pathlib.Path(FOLDER)
meta = json.loads((folder / "model.json").read_text())
step = jax.export.deserialize(bytearray((folder / "model.jax").read_bytes()))
streams = 2
carry = [np.zeros([streams] + c["shape"][1:], c["dtype"]) for c in meta["input"]["carry"]]
for t, frame in enumerate(np.load(FRAMES)):  # Preprocessed frames (streams, S, S, C).
  probabilities, *carry = step.call(frame, *carry)
  np.save(f"{OUT}/{t}.npy", np.asarray(probabilities))
'''


def test_the_exported_step_loaded_with_jax_alone_equals_the_step_over_30_frames(video_run,
                                                                              tmp_path):
  import os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  import test_export  # pylint: disable=g-import-not-at-top  # tests/ is on sys.path
  from dcrn_jax import export as export_lib  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  workdir = video_run[0]
  meta = export_lib.export_workdir(workdir, str(tmp_path / "out"), platforms=("cpu",),
                                   stream=True)
  assert meta["kind"] == "stream" and meta["clip_frames"] == 4
  assert meta["frame_preprocessing"]["crop_size"] == 16 and len(meta["input"]["carry"]) == 1
  p = Predictor.from_workdir(workdir)
  step = jax.jit(streaming.make_step(p.model))
  frames = np.random.default_rng(0).random((30, 2, 16, 16, 3), dtype=np.float32)
  np.save(tmp_path / "frames.npy", frames)
  carry = streaming.initial_carry(p.model, p.variables, 2, (16, 16, 3))
  want = []
  for frame in frames:
    carry, logits = step(p.variables, carry, jnp.asarray(frame))
    want.append(np.asarray(jax.nn.softmax(logits)))
  site = tmp_path / "site"
  site.mkdir()
  test_export.jax_only_site(site)
  script = (f"import sys\nsys.path.insert(0, {str(site)!r})\n"
            f"FOLDER, FRAMES, OUT = {str(tmp_path / 'out')!r}, "
            f"{str(tmp_path / 'frames.npy')!r}, {str(tmp_path)!r}\n" + STREAM_LOADER +
            "for name in ('flax', 'dcrn_jax'):\n"
            "  try:\n"
            "    __import__(name)\n"
            "    raise SystemExit(f'{name} could be imported')\n"
            "  except ModuleNotFoundError:\n"
            "    pass\n")
  r = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True,
                     cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  for t in range(30):
    np.testing.assert_allclose(np.load(tmp_path / f"{t}.npy"), want[t], atol=1e-5, rtol=0)


def test_exporting_the_step_of_an_image_model_is_refused(image_run, tmp_path):
  from dcrn_jax import export as export_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="cannot run one frame at a time"):
    export_lib.export_workdir(image_run[0], str(tmp_path / "out"), stream=True)
  assert not (tmp_path / "out").exists()
