"""What a model learned, in one HTML page: `python -m dcrn_jax.report --workdir=DIR`.

Reads what a run left in its workdir (config.json, label_map.json, metrics.jsonl,
sessions.jsonl, eval.json, eval_predictions.jsonl, the evaluated checkpoint, and a forecast
run's forecast_examples.png) and writes DIR/report/index.html with its pictures beside it:

  summary            model, parameters, data, steps, devices, wall time, final metrics
  training curves    train and test loss and accuracy, learning rate, gradient norm
  per class          scikit-learn's precision, recall, F1 (eval.json), worst first
  confusion matrix   row-normalised, counts on hover; the most-confused pairs
  when the evidence is   the true-class probability drop per occluded frame over many clips
  gallery            the most confident mistakes first, each clip moving, its saliency
                     (integrated gradients) and per-frame importance (occlusion, and the
                     integrated gradients' mass per frame), all for the true class
                     (dcrn_jax/explain.py)
  forecasting runs   the model's metrics beside its baselines, and the first test sequences
                     forecast by the evaluated checkpoint, whatever the model
                     (report/forecasts.py), with the error per step ahead

A section whose inputs are missing is left out and named under "Not shown".
"""

import json
import os
import shutil
import time

from dcrn_jax import tasks, workdir as workdir_lib
from dcrn_jax.errors import UserError
from dcrn_jax.report import figures, forecasts, gallery, page



def _read(workdir: str, name: str, reader):
  path = os.path.join(workdir, name)
  return reader(path) if os.path.isfile(path) else None


def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({e}); run --mode=eval again to rewrite it") from e


def _summary_rows(config, sessions, results, records, num_params):
  trained = max([r["step"] for r in records if r.get("split") == "train"], default=0)
  rows = [("model", f"{config.model.name}"
                    + (f", {num_params:,} parameters" if num_params else "")),
          ("data", f"{config.data.name} (train split {config.data.train_split!r}, "
                   f"eval split {config.data.eval_split!r})"),
          ("trained", f"{trained:,} of {config.num_train_steps:,} steps, batch "
                      f"{config.batch_size}, seed {config.seed}")]
  if sessions:
    last = sessions[-1]
    rows.append(("devices", f"{last['devices']} x {last['platform']} in "
                            f"{last['processes']} process(es)"))
    seconds = sum(s["seconds"] for s in sessions)
    rows.append(("wall time", f"{_duration(seconds)} in {len(sessions)} session(s) "
                              "(training and its evaluations)"))
  if results:
    keys = ("accuracy", "top5_accuracy", "mean_class_accuracy", "macro_f1", "weighted_f1",
            "mse", "ssim", "psnr", "loss")
    rows.append((f"eval at step {results.get('step')}",
                 f"{results.get('num_examples')} examples: " + ", ".join(
                     f"{k} {results[k]:.4f}" for k in keys if results.get(k) is not None)))
  return rows


def _duration(seconds: float) -> str:
  minutes, sec = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def _per_step_series(results: dict | None) -> dict:
  """Lists of numbers in eval.json whose key ends in _per_step (a forecast's error per step)."""
  return {k: v for k, v in (results or {}).items() if k.endswith("_per_step")
          and isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)}


def build_report(workdir: str, out: str | None = None, *, num_examples: int = 12,
                 profile_clips: int = 256, ig_steps: int = 32, fill: str = "neighbours",
                 log=print) -> str:
  """Writes the report of a trained workdir (see the module docstring); returns index.html's
  path. The folder is built beside `out` and swapped in whole when complete."""
  for name, value, least in (("num_examples", num_examples, 0),
                             ("profile_clips", profile_clips, 0), ("ig_steps", ig_steps, 1)):
    if value < least:
      raise UserError(f"{name}={value} must be at least {least}")
  from dcrn_jax import explain  # pylint: disable=g-import-not-at-top
  if fill not in explain.FILLS:
    raise UserError(f"occlusion fill {fill!r} is not one of: {', '.join(explain.FILLS)}")
  t0 = time.perf_counter()
  config = workdir_lib.read_config(workdir)
  out = out or os.path.join(workdir, "report")
  building = out.rstrip("/") + ".building"
  shutil.rmtree(building, ignore_errors=True)
  try:
    os.makedirs(building)
  except OSError as e:
    raise UserError(f"cannot write the report to {out!r} ({e.strerror}); pass a writable "
                    "--out") from e
  log(f"report of {workdir} -> {out}/index.html")
  try:
    _build(workdir, config, building, num_examples, profile_clips, ig_steps, fill, log)
  except BaseException:  # Nothing half-written is left behind, whatever stopped it.
    shutil.rmtree(building, ignore_errors=True)
    raise
  shutil.rmtree(out, ignore_errors=True)
  os.replace(building, out)
  log(f"wrote {out}/index.html in {_duration(time.perf_counter() - t0)}")
  return os.path.join(out, "index.html")


def _build(workdir, config, building, num_examples, profile_clips, ig_steps, fill, log):
  """Writes index.html and its pictures into the folder `building`."""
  records = _read(workdir, "metrics.jsonl", workdir_lib.read_jsonl) or []
  sessions = _read(workdir, workdir_lib.SESSIONS_FILE, workdir_lib.read_jsonl) or []
  results = _read(workdir, workdir_lib.EVAL_FILE, _read_json)
  predictions = _read(workdir, workdir_lib.PREDICTIONS_FILE, workdir_lib.read_jsonl)
  if predictions is not None and results and len(predictions) != results.get("num_examples"):
    raise UserError(f"{workdir}/eval.json ({results.get('num_examples')} examples) and "
                    f"eval_predictions.jsonl ({len(predictions)}) come from different "
                    "evaluations: run --mode=eval again")
  sections, notes = [], []
  num_params = sessions[-1].get("num_params") if sessions else None

  curves = figures.training_curves(records, building)
  if curves:
    sections.append(("Training curves", page.image(curves, "training curves")))
  else:
    notes.append("training curves: metrics.jsonl has no training records")

  task = tasks.get(config.task)  # What its evaluation writes, and so what the report shows.
  if results and "per_class" in results:
    names = workdir_lib.read_class_names(workdir)
    sections.append(("Per class (worst F1 first)", page.per_class_table(results["per_class"])))
    sections.append(("Confusion matrix (rows: true class, normalised)",
                     page.confusion_table(results["confusion_matrix"], names)))
    sections.append(("Most-confused pairs", page.confused_pairs(results["confusion_matrix"],
                                                                names)))
  elif results is None:
    notes.append("evaluation: the workdir has no eval.json (train to the end, or run "
                 "--mode=eval)")
  elif task.per_class:
    notes.append("per-class metrics: eval.json has none (a forecast run, or written by an "
                 "older version: run --mode=eval again)")

  if predictions and num_examples + profile_clips > 0:
    try:
      sections += _explained(workdir, config, results, predictions, building, num_examples,
                             profile_clips, ig_steps, fill, log)
    except UserError as e:  # The checkpoint or the data is gone: the rest is still worth having.
      notes.append(f"gallery and per-frame importance: {e}")
  elif predictions is None and task.per_class:
    notes.append("gallery: the workdir has no eval_predictions.jsonl (run --mode=eval)")

  forecast, shown = [], False
  table = forecasts.quality_table(results) if task.frames_out and results else None
  if table:
    sections.append(("Forecast quality", table))
  if task.frames_out and num_examples:
    try:
      forecast.append(forecasts.gallery(workdir, config, results, building, num_examples, log))
      shown = True
    except UserError as e:  # The checkpoint or the data is gone: eval's pictures, if any.
      notes.append(f"forecasts of test sequences: {e}")
  for picture in () if shown else tasks.all_report_pictures():  # Any evaluation drew.
    if os.path.isfile(os.path.join(workdir, picture)):
      shutil.copy(os.path.join(workdir, picture), building)
      forecast.append(page.image(picture, "forecast examples"))
  per_step = figures.per_step_curves(_per_step_series(results), building)
  if per_step:
    forecast.append(page.image(per_step, "error per forecast step"))
  if forecast:
    sections.append(("Forecasts", "".join(forecast)))

  for note in notes:
    log(f"note: not shown: {note}")
  sections.insert(0, ("Run", page.summary(
      _summary_rows(config, sessions, results, records, num_params), config.to_dict())))
  with open(os.path.join(building, "index.html"), "w", encoding="utf-8") as f:
    f.write(page.page(f"dcrn_jax report: {os.path.abspath(workdir)}", sections, notes))


def _explained(workdir, config, results, predictions, folder, num_examples, profile_clips,
               ig_steps, fill, log):
  """The temporal profile and the gallery: restores the evaluated checkpoint, reads the
  examples back from the eval split and explains them."""
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  step = results.get("step") if results else None
  _, info, _, model, step, variables = train.restore(config, workdir, step)
  chosen = gallery.choose(predictions, num_examples)
  log(f"restored step {step}; reading {len(chosen)} gallery examples and up to "
      f"{profile_clips} clips of {config.data.name}/{config.data.eval_split}")
  found, drops, labels = gallery.temporal_profile(
      model, variables, config, {r["index"] for r in chosen}, count=profile_clips, fill=fill)
  sections = []
  fill_text = ("the mean of its two neighbours (one at either end)" if fill == "neighbours"
               else "the clip's mean frame")
  if drops is not None:
    log(f"mean true-class probability drop per occluded frame ({len(drops)} clips): "
        + " ".join(f"{d:.4f}" for d in drops.mean(axis=0)))
    sections.append(("When the evidence is", page.paragraph(
        f"How much the true class's probability drops when one frame is replaced by "
        f"{fill_text}, over the first {len(drops)} clips of the eval split (one view each).")
        + page.image(figures.temporal_profile(drops, labels, info.class_names, folder),
                     "temporal importance")))
  log(f"explaining {len(chosen)} examples (integrated gradients, {ig_steps} steps)")
  examples = gallery.explain_examples(model, variables, chosen, found, ig_steps=ig_steps,
                                      fill=fill)
  cards = []
  for i, e in enumerate(examples):
    if e.inputs.ndim == 4:
      moving = figures.animation(e.inputs, folder, f"example{i}.webp")
    else:
      moving = figures.still(e.inputs, folder, f"example{i}.png")
    strip = figures.evidence_strip(e.inputs, e.saliency, folder, f"evidence{i}.png",
                                   e.occlusion, e.frame_mass)
    cards.append(page.card(e, moving, strip, e.record.get("views", 1)))
  if cards:
    what = ("Each clip moves on the left. Right, top: its frames; middle: integrated "
            f"gradients ({ig_steps} steps from a black input) over them; bottom, per frame: the "
            f"true-class probability drop when the frame is replaced by {fill_text} (blue) and "
            "the frame's share of the integrated gradients (orange). All for the true class."
            if examples[0].inputs.ndim == 4 else
            "Each image with integrated gradients of the true class over it.")
    mistakes = sum(e.record["label"] != e.record["prediction"] for e in examples)
    sections.append((f"Gallery: {mistakes} most confident mistakes, then right answers",
                     page.paragraph(what) + "<div class='cards'>" + "".join(cards) + "</div>"))
  return sections


__all__ = ["build_report"]
