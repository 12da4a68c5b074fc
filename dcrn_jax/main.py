"""Command line: python -m dcrn_jax.main --config=configs/video_gru.py --workdir=DIR [--mode=eval]

Only wires flags to dcrn_jax.train. Any config field can be overridden, e.g.
--config.batch_size=16 --config.model.hidden_size=64.
"""

import difflib
import importlib.util
import os
import sys

# Config files import `configs.default`; make the folder holding `configs/` importable even
# when the command is not run from the repository root.
for _arg in sys.argv[1:]:
  if _arg.startswith("--config="):
    _path = os.path.abspath(_arg.split("=", 1)[1].split(":", 1)[0])
    sys.path.insert(0, os.path.dirname(os.path.dirname(_path)))

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from dcrn_jax.errors import UserError  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train (resumes from WORKDIR if it holds checkpoints) or eval.")
_VERBOSE = flags.DEFINE_bool("verbose", False,
                             "Show library INFO logs, and the traceback of user errors.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Start JAX's distributed runtime: auto (when a coordinator is given, or on a SLURM job or "
    "Cloud TPU pod of several processes), on (always; JAX detects the cluster), off.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (else $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id (else $JAX_PROCESS_ID).")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "Devices this process uses, e.g. 0,1 (else $JAX_LOCAL_DEVICE_IDS).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def _unknown_override(argv) -> str | None:
  """Names the first --config.a.b=... override whose key does not exist, with the valid keys."""
  path = next((a.split("=", 1)[1].split(":", 1)[0] for a in argv if a.startswith("--config=")),
              None)
  if path is None or not os.path.exists(path):
    return None
  spec = importlib.util.spec_from_file_location("_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    node, walked = config, "config"
    for key in arg[len("--config."):].split("=", 1)[0].split("."):
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (f"unknown config key {walked}.{key} in {arg}: {hint}valid keys of {walked}: "
                + ", ".join(sorted(keys)))
      node, walked = node[key], f"{walked}.{key}"
  return None


def _parse_flags(argv):
  """absl's flag parsing, with config mistakes reported in one line instead of a traceback."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1].split(":", 1)[0]
      if not os.path.isfile(path):
        _fail(f"config file {path!r} not found (run from the repository root, or give its path)")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"{e} (see --helpshort)")
  except (AttributeError, KeyError, OSError, TypeError, ValueError) as e:
    _fail(_unknown_override(argv[1:]) or " ".join(str(e).split()))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Orbax and TFDS log every file operation at INFO; a user wants the progress lines.
  logging.set_verbosity(logging.INFO if _VERBOSE.value else logging.WARNING)
  from dcrn_jax import distributed, host, train  # pylint: disable=g-import-not-at-top
  host.tune_malloc()  # Steps reuse freed memory instead of faulting in fresh pages (host.py).
  try:
    distributed.initialize(
        _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
        [int(i) for i in _LOCAL_DEVICE_IDS.value] if _LOCAL_DEVICE_IDS.value else None)
    if _MODE.value == "train":
      train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    else:
      train.evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    if _VERBOSE.value:
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Background threads (TensorStore after a failed checkpoint read) must not print after the
    # one line: stderr goes to /dev/null for the few instructions left.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    # No interpreter teardown: after a failed checkpoint read, TensorStore threads may still call
    # into Orbax's closed event loop, and each call prints a harmless traceback.
    os._exit(2)  # pylint: disable=protected-access


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
