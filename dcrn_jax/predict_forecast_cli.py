"""`python -m dcrn_jax.predict --workdir=W CLIP...` on a forecasting run (task='forecast').

Prints one line per clip (its frames in and predicted; when the clip holds the Tout frames
after its inputs too, evaluation's MSE and SSIM of the forecast against them and the MSE of the
last input frame repeated), and with --out=DIR writes per clip, each file whole:

  DIR/<name>.gif (or .webp, --format)  the clip's input frames, then the forecast beside the
                                       true frames (the forecast alone when the clip ends)
  DIR/<name>.png                       a strip: input | truth (when the clip has it) | prediction
  DIR/<name>.npy                       the predicted frames, float32 (Tout, H, W, C) as
                                       Predictor.predict_arrays returns them

<name> is the clip's file name without its extension (made unique with _2, _3, ...). A clip
that cannot serve (unreadable, or shorter than data.input_frames) is one `error:` line and
nothing is written. The classification options (--top_k, --output, --threads) are refused
here, and --out/--format on a classifier's run (`check_flags`).
"""

import os
import sys
import time

from absl import flags

from dcrn_jax.errors import UserError

FLAGS = flags.FLAGS
FORMATS = ("gif", "webp")
CLASSIFY_ONLY = ("top_k", "output", "threads")
FORECAST_ONLY = ("out", "format")


def define_flags():
  flags.DEFINE_string("out", None,
                      "Forecasting runs: write each clip's animation, PNG strip and predicted "
                      "frames (.npy) into this folder.")
  flags.DEFINE_enum("format", "gif", list(FORMATS),
                    "Forecasting runs: the animation's format with --out.")


def serves(workdir: str) -> bool:
  """Whether `workdir` holds a run whose task predicts frames (a forecasting run; False when it
  holds no readable config or an unknown task: the classifiers' path then says what is
  wrong)."""
  from dcrn_jax import tasks, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
    return False
  try:
    config = workdir_lib.read_config(workdir)
  except UserError:
    return False
  return config.task in tasks.NAMES and tasks.get(config.task).frames_out


def check_flags(forecasting: bool) -> None:
  """UserError when a flag of the other task was given on the command line."""
  wrong = FORECAST_ONLY if not forecasting else CLASSIFY_ONLY
  given = [f"--{name}" for name in wrong if FLAGS[name].present]
  if given:
    task, other = ("forecast", "classifiers") if forecasting else ("classify", "forecasters")
    raise UserError(f"{', '.join(given)}: an option for {other}, but this run is of task="
                    f"{task!r}; drop it" + ("" if forecasting else
                                            " (--output=FILE.jsonl writes a classifier's "
                                            "predictions)"))


def _names(paths) -> list[str]:
  """A unique file stem per clip."""
  names, seen = [], {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0] or "clip"
    seen[stem] = seen.get(stem, 0) + 1
    names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
  return names


def _scores(forecast) -> str:
  """'; vs truth: mse .., ssim .. (last frame mse ..)' by evaluation's definitions, or ''."""
  if forecast.targets is None:
    return ""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dcrn_jax.tasks import forecast_evaluation  # pylint: disable=g-import-not-at-top
  true = forecast.targets[None]
  model = forecast_evaluation.frame_metrics(forecast.predictions[None], true)
  last = np.repeat(forecast.inputs[None, -1:], len(forecast.targets), axis=1)
  baseline = forecast_evaluation.frame_metrics(last, true)
  return (f"; vs truth: mse {float(model['mse'].mean()):.4g}, ssim "
          f"{float(model['ssim'].mean()):.4f} (last input frame repeated: mse "
          f"{float(baseline['mse'].mean()):.4g})")


def write_pictures(predictor, forecast, folder: str, name: str, fmt: str) -> list[str]:
  """Writes <name>.<fmt>, <name>.png and <name>.npy of one ClipForecast into folder."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dcrn_jax.tasks import forecast_pictures  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict_forecast import to_pixels  # pylint: disable=g-import-not-at-top
  d = predictor.config.data
  inputs, predictions = to_pixels(forecast.inputs, d), to_pixels(forecast.predictions, d)
  targets = None if forecast.targets is None else to_pixels(forecast.targets, d)
  base = os.path.join(folder, name)
  forecast_pictures.save_animation(
      forecast_pictures.sequence_gif(inputs, targets, predictions), f"{base}.{fmt}")
  forecast_pictures.strip_png(inputs, predictions, targets).save(base + ".png.tmp", format="PNG")
  os.replace(base + ".png.tmp", base + ".png")
  with open(base + ".npy.tmp", "wb") as f:
    np.save(f, forecast.predictions)
  os.replace(base + ".npy.tmp", base + ".npy")
  return [f"{base}.{fmt}", base + ".png", base + ".npy"]


def forecast_command(workdir: str, paths, *, step="latest", batch_size: int = 0,
                     out: str | None = None, fmt: str = "gif", stdout=None, err=None) -> dict:
  """What `python -m dcrn_jax.predict` does on a forecasting run; returns {'clips',
  'written'}. UserError for bad arguments, paths, workdirs and clips (nothing written)."""
  stdout, err = stdout or sys.stdout, err or sys.stderr
  if batch_size < 0:
    raise UserError(f"--batch_size={batch_size} must be 0 (automatic) or more")
  if fmt not in FORMATS:
    raise UserError(f"--format={fmt}: choose {' or '.join(FORMATS)}")
  if not paths:
    raise UserError("give the clip files (or folders of them) to forecast from, e.g. python -m "
                    "dcrn_jax.predict --workdir=runs/forecast seq.npy clip.mp4")
  if out and os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--out={out} is a file; give a folder")
  from dcrn_jax.predict_forecast import ForecastPredictor  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  predictor = ForecastPredictor.from_workdir(workdir, step, batch_size=batch_size or None)
  t_in, t_out = predictor.input_frames, predictor.output_frames
  print(f"{predictor.config.model.name} of {workdir} (step {predictor.step}): the first "
        f"{t_in} frames of each clip in, {t_out} predicted, frames of "
        f"{predictor.input_shape[1:]}", file=err, flush=True)
  forecasts = predictor.predict(paths)
  written = []
  if out:
    try:
      os.makedirs(out, exist_ok=True)
    except OSError as e:
      raise UserError(f"cannot write to --out={out} ({e.strerror}); choose a writable folder"
                      ) from e
  for forecast, name in zip(forecasts, _names(f.path for f in forecasts)):
    files = write_pictures(predictor, forecast, out, name, fmt) if out else []
    written += files
    print(f"{forecast.path}: {t_in} frames in -> {t_out} predicted{_scores(forecast)}"
          + (f"; wrote {', '.join(os.path.basename(f) for f in files)}" if files else ""),
          file=stdout, flush=True)
  print(f"forecast {len(forecasts)} clip(s) in {time.perf_counter() - start:.1f} s"
        + (f"; wrote {len(written)} file(s) into {out}" if out else ""), file=err, flush=True)
  return {"clips": len(forecasts), "written": written}
