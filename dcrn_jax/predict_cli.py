"""python -m dcrn_jax.predict --workdir=DIR PATH... : the command line of dcrn_jax/predict/

A forecasting run's workdir is served by predict_forecast_cli.py (predicted frames, --out);
what follows is the classifiers'.

Prints each file's top-k classes (or writes them to --output=FILE.jsonl / FILE.csv, whole or
not at all), a progress line with ETA on long runs, warnings for the files it skips, and a
summary. Exit code 0 when at least one file was predicted; a UserError (one `error:` line, exit
code 2) for bad flags, paths, workdirs, or when no file could be read.
"""

import csv
import json
import os
import sys
import time

from absl import app, flags

from dcrn_jax import cli, predict_forecast_cli
from dcrn_jax.errors import UserError

FLAGS = flags.FLAGS
OUTPUT_FORMATS = (".jsonl", ".csv")
_QUIET_PROGRESS_S = 10.0  # Without a terminal, a progress line this often.


def define_flags():
  flags.DEFINE_string("workdir", None, "The workdir of a training run.")
  flags.DEFINE_string("step", "latest",
                      "Checkpoint to use: latest, best (by the run's best_metric), or a step number.")
  flags.DEFINE_integer("top_k", 5, "Classes shown per file, most probable first.")
  flags.DEFINE_integer("batch_size", 0,
                       "Model inputs (a video's views count one each) per step; 0: the run's "
                       "eval_batch_size.")
  flags.DEFINE_string("output", None,
                      "Write the predictions to this .jsonl or .csv file instead of printing "
                      "them (written whole at the end, or not at all).")
  flags.DEFINE_integer("threads", 0, "Files decoded at once; 0: twice the CPU count (<= 16).")
  flags.DEFINE_bool("verbose", False, "Show library logs and warnings, and tracebacks.")
  flags.DEFINE_string("stream", None,
                      "A video to score frame by frame with the model's carried state (recurrent "
                      "clip models): one row per frame, then frames/s and per-frame latency.")
  flags.DEFINE_string("plot", None, "With --stream: draw class probabilities over time to "
                      "this .png file.")
  flags.DEFINE_enum("window", "grow", ["grow", "reset", "staggered"],
                    "With --stream: how a stream longer than a clip is seen (dcrn_jax/stream.py).")
  flags.DEFINE_integer("states", 2, "With --stream --window=staggered: states run at once.")
  predict_forecast_cli.define_flags()
  flags.mark_flag_as_required("workdir")
  # --helpshort lists the key flags of the main module (predict/__main__.py when run with -m).
  for name in ("workdir", "step", "top_k", "batch_size", "output", "threads", "out", "format",
               "verbose"):
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])


class _Progress:
  """files done/total, files/s and ETA on stderr: a live line on a terminal, else a line every
  _QUIET_PROGRESS_S seconds."""

  def __init__(self, total: int, err):
    self._total, self._err = total, err
    self._live = err.isatty()
    self._start = self._shown = time.perf_counter()
    self.done = 0

  def rate(self) -> float:
    return self.done / max(time.perf_counter() - self._start, 1e-9)

  def line(self) -> str:
    rate = self.rate()
    eta = (self._total - self.done) / rate if rate > 0 else float("nan")
    from dcrn_jax.metrics import format_duration  # pylint: disable=g-import-not-at-top
    return (f"{self.done}/{self._total} files | {rate:.1f} files/s | ETA "
            f"{format_duration(eta)}")

  def clear(self):
    if self._live:
      self._err.write("\r\033[K")

  def step(self):
    self.done += 1
    now = time.perf_counter()
    if self._total < 2:
      return
    if self._live:
      self._err.write("\r" + self.line())
      self._err.flush()
    elif now - self._shown >= _QUIET_PROGRESS_S:
      self._shown = now
      print(self.line(), file=self._err, flush=True)


def _record(prediction, top_k: int) -> dict:
  return {"path": prediction.path,
          "top_k": [{"class": name, "probability": p} for name, p in prediction.top_k(top_k)],
          "views": prediction.views, "note": prediction.note, "error": prediction.error}


class _Output:
  """--output: records go to FILE.tmp, renamed to FILE by `commit`; `discard` removes it."""

  def __init__(self, path: str, top_k: int):
    self.path, self._tmp, self._top_k = path, path + ".tmp", top_k
    self._csv = path.lower().endswith(".csv")
    try:
      self._file = open(self._tmp, "w", encoding="utf-8", newline="")
    except OSError as e:
      raise UserError(f"cannot write --output={path} ({e.strerror}); choose a writable path"
                      ) from e
    if self._csv:
      self._writer = csv.writer(self._file)
      header = ["path"]
      for i in range(1, top_k + 1):
        header += [f"class_{i}", f"probability_{i}"]
      self._writer.writerow(header + ["views", "note", "error"])

  def write(self, prediction):
    if not self._csv:
      self._file.write(json.dumps(_record(prediction, self._top_k)) + "\n")
      return
    row = [prediction.path]
    top = prediction.top_k(self._top_k)
    for name, p in top + [("", "")] * (self._top_k - len(top)):
      row += [name, p if p == "" else f"{p:.6g}"]
    self._writer.writerow(row + [prediction.views, prediction.note, prediction.error])

  def commit(self):
    self._file.close()
    os.replace(self._tmp, self.path)

  def discard(self):
    self._file.close()
    if os.path.exists(self._tmp):
      os.remove(self._tmp)


def _line(prediction, top_k: int) -> str:
  top = "  ".join(f"{name} {p:.3f}" for name, p in prediction.top_k(top_k))
  return f"{prediction.path}  {top}" + (f"  [{prediction.note}]" if prediction.note else "")


def predict_command(workdir: str, paths, *, step="latest", top_k: int = 5, batch_size: int = 0,
                    output: str | None = None, threads: int = 0, out=None, err=None) -> dict:
  """What `python -m dcrn_jax.predict` does; returns {'predicted', 'skipped', 'files'}.

  Raises UserError for bad arguments, paths or workdirs, and when no file could be read.
  """
  out, err = out or sys.stdout, err or sys.stderr
  if top_k < 1:
    raise UserError(f"--top_k={top_k} must be 1 or more")
  for name, value in (("batch_size", batch_size), ("threads", threads)):
    if value < 0:
      raise UserError(f"--{name}={value} must be 0 (automatic) or more")
  if output and not output.lower().endswith(OUTPUT_FORMATS):
    raise UserError(f"--output={output}: give a .jsonl or .csv file")
  if not paths:
    raise UserError("give the video or image files (or folders of them) to predict, e.g. "
                    "python -m dcrn_jax.predict --workdir=runs/video_gru clips/")
  from dcrn_jax import predict  # pylint: disable=g-import-not-at-top  # jax and flax: slow
  from dcrn_jax.data import files as data_files  # pylint: disable=g-import-not-at-top
  files = data_files.list_inputs(paths)
  predictor = predict.Predictor.from_workdir(workdir, step, batch_size=batch_size or None)
  if not isinstance(predictor, predict.Predictor):
    raise UserError(f"{workdir} holds a forecasting run: its command is "
                    "predict_forecast_cli.forecast_command")
  spec = predictor.file_spec
  top_k = min(top_k, len(predictor.class_names))
  print(f"{predictor.config.model.name} of {workdir} (step {predictor.step}, "
        f"{len(predictor.class_names)} classes) on {len(files)} file(s): {spec.kind}s, "
        f"{spec.views} view(s) of {predictor.input_shape} each", file=err, flush=True)
  writer = _Output(output, top_k) if output else None
  progress, skipped = _Progress(len(files), err), 0
  try:
    for prediction in predictor.iter_files(files, threads=threads):
      progress.clear()
      if prediction.error:
        skipped += 1
        print(f"warning: skipping {prediction.path}: {prediction.error}", file=err, flush=True)
      if writer:
        writer.write(prediction)
      elif not prediction.error:
        print(_line(prediction, top_k), file=out, flush=True)
      progress.step()
    progress.clear()
    if skipped == len(files):
      raise UserError(f"none of the {len(files)} file(s) could be read: see the warnings above"
                      + ("; nothing was written" if writer else ""))
  except BaseException:
    if writer:
      writer.discard()
    raise
  if writer:
    writer.commit()
  summary = (f"predicted {len(files) - skipped} of {len(files)} file(s) in "
             f"{time.perf_counter() - progress._start:.1f} s ({progress.rate():.1f} files/s)")  # pylint: disable=protected-access
  if skipped:
    summary += f"; skipped {skipped} (see the warnings above)"
  print(summary + (f"; wrote {output}" if writer else ""), file=err, flush=True)
  return {"predicted": len(files) - skipped, "skipped": skipped, "files": len(files)}


def main(argv):
  cli.quiet_libraries(FLAGS.verbose)
  with cli.user_errors(FLAGS.verbose):
    if FLAGS.stream:
      from dcrn_jax import stream_cli  # pylint: disable=g-import-not-at-top
      if argv[1:]:
        raise UserError("--stream takes one video: give no other paths")
      stream_cli.stream_command(FLAGS.workdir, FLAGS.stream, step=FLAGS.step, top_k=FLAGS.top_k,
                                output=FLAGS.output, plot=FLAGS.plot, window=FLAGS.window,
                                states=FLAGS.states)
      return
    forecasting = predict_forecast_cli.serves(FLAGS.workdir)
    predict_forecast_cli.check_flags(forecasting)
    if forecasting:
      predict_forecast_cli.forecast_command(FLAGS.workdir, argv[1:], step=FLAGS.step,
                                            batch_size=FLAGS.batch_size, out=FLAGS.out,
                                            fmt=FLAGS.format)
      return
    predict_command(FLAGS.workdir, argv[1:], step=FLAGS.step, top_k=FLAGS.top_k,
                    batch_size=FLAGS.batch_size, output=FLAGS.output, threads=FLAGS.threads)


def run():
  define_flags()
  app.run(main, flags_parser=cli.parse_plain_flags)
