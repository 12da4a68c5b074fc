"""What a run keeps in WORKDIR besides checkpoints, and reading it back.

    config.json      the full config of the run (written at the start of training)
    label_map.json   class index -> class name (written by the data room)
    input.json       {"input_shape": [...]}: one model input, no batch dimension (written by
                     training since predict exists; read by predict and export)
    metrics.jsonl    see metrics.py
    eval.json, eval_predictions.jsonl   the latest evaluation's metrics and its per-example
                     predictions (evaluation.to_records), written together by train.py
    sessions.jsonl   one line per training session: steps, seconds, devices (train.py)

Tools that start from a trained workdir (predict, export, report) read the config and the
class names from here, so they need no --config flag.
"""

import json
import os

import jax
import ml_collections

from dcrn_jax import upgrades, write_failures
from dcrn_jax.errors import UserError

CONFIG_FILE = "config.json"
LABEL_MAP_FILE = "label_map.json"
EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "eval_predictions.jsonl"
SESSIONS_FILE = "sessions.jsonl"
INPUT_FILE = "input.json"
# Parts of the config a run's checkpoints depend on: changing them in the same workdir is refused.
# optim.accumulate_steps too: it sets where the data stream of a step starts (and the optimizer
# state's structure), so a resume with another value would not continue the same run.
RUN_DEFINING = ("model", "seed", "optim.accumulate_steps")


def _pick(config: dict, dotted: str):
  """{'optim': {'accumulate_steps': 2}} for 'optim.accumulate_steps' (KeyError if absent)."""
  head, _, rest = dotted.partition(".")
  return {head: _pick(config[head], rest) if rest else config[head]}


def _writing(path: str):
  """A failed write of PATH (no space, read-only, ...) is a WriteFailed naming it."""
  return write_failures.into(os.path.dirname(path), os.path.basename(path))


def _replace_whole(path: str, write) -> None:
  """write(f) into PATH.tmp, then the rename: a kill never leaves half a file, and a failed
  write leaves the old file (the partial one is removed)."""
  tmp = path + ".tmp"
  with _writing(path):
    try:
      with open(tmp, "w", encoding="utf-8") as f:
        write(f)
      os.replace(tmp, path)
    except OSError:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise


def write_json(path: str, obj, **kwargs) -> None:
  """Writes obj as JSON whole, then renames: a kill never leaves half a file."""
  _replace_whole(path, lambda f: json.dump(obj, f, **kwargs))


def write_jsonl(path: str, records) -> None:
  """Writes one JSON object per line, whole, then renames (like write_json)."""
  _replace_whole(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in records))


def read_jsonl(path: str) -> list[dict]:
  """The objects of a JSONL file; a line cut off by a kill mid-append is skipped."""
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def record_session(workdir: str, record: dict) -> None:
  """Appends one training session's facts (steps, seconds, devices) to WORKDIR/sessions.jsonl."""
  path = os.path.join(workdir, SESSIONS_FILE)
  with _writing(path), open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(record) + "\n")


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
  """'key.sub: old -> new' for every leaf that differs between two config dicts."""
  diffs = []
  for key in sorted(saved.keys() | current.keys()):
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, f"{prefix}{key}.")
    elif a != b:
      diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return diffs


def _has_checkpoints(workdir: str) -> bool:
  folder = os.path.join(workdir, "checkpoints")
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _saved_config(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  saved.pop(upgrades.VERSION_KEY, None)
  return saved


def check_same_run(workdir: str, config) -> None:
  """Refuses a config whose run-defining fields differ from the run whose checkpoints WORKDIR
  holds. Fields the saved config.json lacks read as upgrades.WHEN_ABSENT says (an older
  release's run); one the table cannot resolve is named, with what to add."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not (_has_checkpoints(workdir) and os.path.exists(path)):
    return
  with open(path, encoding="utf-8") as f:
    written_by = upgrades.read_version(json.load(f))
  saved = _saved_config(path)
  current = json.loads(config.to_json_best_effort())
  missing = [f for key in RUN_DEFINING for f in upgrades.unresolved(saved, current, key)]
  if missing:
    raise UserError(
        f"{path} (written by dcrn_jax {written_by}) does not record "
        + ", ".join(missing) + ", and its value in that run is not known: add it to that file "
        "with the value the run was trained with (e.g. " + ", ".join(
            f"{m.rpartition('.')[2]!r} under {m.rpartition('.')[0] or 'the top level'!r}"
            for m in missing[:2]) + "), or train in a new --workdir")
  saved = upgrades.upgrade(saved, current)
  diffs = []
  for key in RUN_DEFINING:
    try:
      old = _pick(saved, key)
    except KeyError:  # A field of the current config only (never run-defining before).
      continue
    diffs += config_differences(old, _pick(current, key))
  if diffs:
    raise UserError(f"{workdir} holds checkpoints of a run with another config ("
                    + "; ".join(diffs[:5]) + "): resuming it with this one would mix two "
                    "runs. Use a new --workdir, or the config saved in " + path)


def prepare(workdir: str, config) -> None:
  """Creates WORKDIR and records the config (with the dcrn_jax version that writes it);
  refuses a different model in a trained workdir (check_same_run)."""
  check_same_run(workdir, config)
  path = os.path.join(workdir, CONFIG_FILE)
  current = upgrades.stamp(json.loads(config.to_json_best_effort()))
  write_failures.create_workdir(workdir)
  if jax.process_index() == 0:
    write_json(path, current, indent=2, sort_keys=True)


def _read_json(workdir: str, name: str, what: str):
  path = os.path.join(workdir, name)
  if not os.path.isfile(path):
    raise UserError(f"{path} is missing: {workdir} is not the workdir of a training run "
                    f"(it needs {what}); point --workdir at a folder `python -m dcrn_jax.main "
                    "--mode=train` wrote")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"cannot read {path} ({e}); restore it from the run's config file") from e


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The locked config a run was trained with, from WORKDIR/config.json."""
  raw = _read_json(workdir, CONFIG_FILE, "the run's config")
  raw.pop(upgrades.VERSION_KEY, None)
  raw = upgrades.upgrade(raw, upgrades.table_tree())  # An older release's run: fields it lacks.

  def tuples(x):  # JSON has lists only; configs hold tuples.
    if isinstance(x, dict):
      return {k: tuples(v) for k, v in x.items()}
    return tuple(tuples(v) for v in x) if isinstance(x, list) else x

  config = ml_collections.ConfigDict(tuples(raw))
  config.lock()
  return config


def read_class_names(workdir: str) -> tuple[str, ...]:
  """Class names by index, from WORKDIR/label_map.json."""
  raw = _read_json(workdir, LABEL_MAP_FILE, "the class names")
  try:
    return tuple(raw[str(i)] for i in range(len(raw)))
  except KeyError as e:
    raise UserError(f"{os.path.join(workdir, LABEL_MAP_FILE)} does not map 0..{len(raw) - 1} "
                    "to class names") from e


def write_input_shape(workdir: str, input_shape) -> None:
  """Records the shape of one model input (no batch dimension) in WORKDIR/input.json."""
  write_json(os.path.join(workdir, INPUT_FILE), {"input_shape": [int(n) for n in input_shape]},
             indent=1)


def read_input_shape(workdir: str) -> tuple[int, ...] | None:
  """The model's input shape from WORKDIR/input.json; None for runs that predate the file."""
  if not os.path.isfile(os.path.join(workdir, INPUT_FILE)):
    return None
  raw = _read_json(workdir, INPUT_FILE, "the model's input shape")
  shape = raw.get("input_shape") if isinstance(raw, dict) else None
  if not (isinstance(shape, list) and shape and all(isinstance(n, int) and n > 0 for n in shape)):
    raise UserError(f"{os.path.join(workdir, INPUT_FILE)} does not hold an input_shape of "
                    "positive ints; delete it to read the shape from the dataset instead")
  return tuple(shape)
