"""Metric writers (metrics.jsonl, TensorBoard) and the progress line. Only process 0 writes."""

import json
import math
import os
import sys
import time

import jax
import numpy as np

from dcrn_jax import write_failures


def mean_metrics(per_step: list[dict]) -> dict[str, float]:
  """Averages per-step metric dicts over the steps whose update was applied (finite).

  `nonfinite` becomes the number of steps that were not; device arrays are fetched together.
  """
  fetched = jax.device_get(per_step)
  good = [m for m in fetched if not m.get("nonfinite", 0)] or fetched
  out = {k: float(np.mean([m[k] for m in good])) for k in fetched[0] if k != "nonfinite"}
  if "nonfinite" in fetched[0]:
    out["nonfinite_steps"] = int(sum(m["nonfinite"] for m in fetched))
  return out


# Metrics of an update as a whole: with gradient accumulation they are final on its last
# micro-batch (steps.train_step); the others are averaged over its micro-batches.
_OF_THE_UPDATE = ("grad_norm", "clipped", "learning_rate")


def merge_micro_steps(micro: list[dict]) -> dict:
  """The fetched metrics of one update's micro-batches -> the update's metrics. `nonfinite`
  becomes the number of non-finite micro-batches."""
  if len(micro) == 1:
    return micro[0]
  out = {k: (micro[-1][k] if k in _OF_THE_UPDATE else float(np.mean([m[k] for m in micro])))
         for k in micro[0]}
  if "nonfinite" in out:
    out["nonfinite"] = float(sum(m["nonfinite"] for m in micro))
  return out


def _keep_records_up_to(path: str, step: int) -> None:
  kept = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if record.get("step", 0) <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


class MetricWriter:
  """Appends {'step', 'split', metrics...} lines to WORKDIR/metrics.jsonl and TensorBoard events
  under WORKDIR/tensorboard/<split>. A no-op on processes other than 0."""

  def __init__(self, workdir: str, resume_step: int | None = None, splits=()):
    """resume_step: the step training restarts from; records after it (written before a crash
    or kill, and about to be redone) are dropped, as is a line cut off mid-write.

    splits: the TensorBoard writers to open now rather than at their first write. TensorBoard's
    writer (tensorboardX, which imports PyTorch when it is installed: seconds) is imported here,
    so that the loop never stalls on it at its first log.
    """
    self._enabled = jax.process_index() == 0
    self._workdir = workdir
    self._purge_step = None if resume_step is None else resume_step + 1
    self._tb = {}
    self._summary_writer = None
    if self._enabled:
      path = os.path.join(workdir, "metrics.jsonl")
      with self._writing():
        if resume_step is not None and os.path.exists(path):
          _keep_records_up_to(path, resume_step)
        self._jsonl = open(path, "a", encoding="utf-8")
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:  # Optional on machines without it (e.g. a bare GPU box).
        pass
      else:
        self._summary_writer = SummaryWriter
      for split in splits:
        self._tensorboard(split)

  def _writing(self, what="metrics.jsonl"):
    """A failed write (no space, read-only workdir) is a WriteFailed naming the file."""
    return write_failures.into(self._workdir, what)

  def _tensorboard(self, split):
    if split not in self._tb:
      with self._writing(f"the TensorBoard events (tensorboard/{split})"):
        self._tb[split] = None if self._summary_writer is None else self._summary_writer(
            os.path.join(self._workdir, "tensorboard", split), purge_step=self._purge_step)
    return self._tb[split]

  def write(self, step: int, split: str, metrics: dict):
    """Logs the numbers of `metrics`; structured results (an evaluation's per_class and
    confusion_matrix) are left to eval.json."""
    if not self._enabled:
      return
    metrics = {k: v for k, v in metrics.items()
               if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
    record = {"step": int(step), "split": split}
    record.update({k: (float(v) if isinstance(v, (float, np.floating)) else v)
                   for k, v in metrics.items()})
    with self._writing():
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    tb = self._tensorboard(split)
    if tb is not None:
      with self._writing(f"the TensorBoard events (tensorboard/{split})"):
        for k, v in metrics.items():
          if isinstance(v, (int, float, np.number)):
            tb.add_scalar(k, float(v), int(step))
        tb.flush()

  def close(self):
    if self._enabled:
      with self._writing():
        try:
          self._jsonl.close()
        finally:
          for tb in self._tb.values():
            if tb is not None:
              tb.close()


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_metrics(metrics: dict) -> str:
  names = {"loss": "loss", "accuracy": "acc", "top5_accuracy": "top5", "mse": "mse",
           "mae": "mae", "ssim": "ssim", "psnr": "psnr",
           "baseline_last_frame_mse": "last-frame mse", "learning_rate": "lr",
           "grad_norm": "gnorm"}
  parts = []
  for k, short in names.items():
    if k in metrics:
      v = metrics[k]
      parts.append(f"{short} {v:.2e}" if k == "learning_rate" else f"{short} {v:.4f}")
  return " | ".join(parts)


class Progress:
  """Step, steps/s and ETA: a live line on a terminal, plus a permanent line at each log step.

  Steps/s is measured between log points on the host, without waiting for the device each step.
  """

  def __init__(self, start_step: int, total_steps: int, *, live: bool = True):
    self._enabled = jax.process_index() == 0
    self._live = live and self._enabled and sys.stdout.isatty()
    self._total = total_steps
    self._last_step, self._last_time = start_step, time.perf_counter()
    self.steps_per_sec = float("nan")

  def mark(self, step: int) -> float:
    """Call after the step's results are on the host: updates and returns steps/s."""
    now = time.perf_counter()
    if step > self._last_step:
      self.steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return self.steps_per_sec

  def eta(self, step: int) -> str:
    return format_duration((self._total - step) / self.steps_per_sec
                           if self.steps_per_sec > 0 else float("nan"))

  def tick(self, step: int):
    if self._live:
      sys.stdout.write(f"\rstep {step}/{self._total}")
      sys.stdout.flush()

  def log(self, step: int, metrics: dict, split: str = "train"):
    if not self._enabled:
      return
    line = f"[{split}] step {step}/{self._total}"
    if "micro_step" in metrics:  # Gradient accumulation: updates and micro-batches both.
      line += f" (micro-step {metrics['micro_step']})"
    line += f" | {format_metrics(metrics)}"
    if "epoch" in metrics:
      line += f" | epoch {metrics['epoch']:.2f}"
    if split == "train":
      line += f" | {self.steps_per_sec:.2f} steps/s | ETA {self.eta(step)}"
    print(("\r" if self._live else "") + line, flush=True)


def format_per_class(results: dict, max_rows: int = 20) -> str:
  """A compact per-class table of an evaluation's results (worst F1 first when it is cut)."""
  per_class = results.get("per_class")
  if not per_class:
    return ""
  rows = list(per_class.items())
  note = ""
  if len(rows) > max_rows:
    rows = sorted(rows, key=lambda r: -1.0 if r[1]["f1"] is None else r[1]["f1"])[:max_rows]
    note = f"\n({max_rows} lowest F1 of {len(per_class)} classes; all of them in eval.json)"
  width = max(len("class"), *(len(name) for name, _ in rows))
  fmt = lambda v: "    -" if v is None else f"{v:.3f}"
  lines = [f"{'class':<{width}}  prec.  recall    f1   support"]
  lines += [f"{name:<{width}}  {fmt(m['precision'])}  {fmt(m['recall'])}  {fmt(m['f1'])}  "
            f"{m['support']:>7}" for name, m in rows]
  lines.append(f"{'macro':<{width}}  {fmt(results['macro_precision'])}  "
               f"{fmt(results['macro_recall'])}  {fmt(results['macro_f1'])}  "
               f"{results['num_examples']:>7}")
  return "\n".join(lines) + note
