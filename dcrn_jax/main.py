"""Command line: python -m dcrn_jax.main --config=configs/video_gru.py --workdir=DIR [--mode=eval]

Only wires flags to dcrn_jax.train. Any config field can be overridden, e.g.
--config.batch_size=16 --config.model.hidden_size=64.
"""

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Orbax and TFDS log every file operation at INFO; a user wants the progress lines.
  logging.set_verbosity(logging.INFO if _VERBOSE.value else logging.WARNING)
  from dcrn_jax import distributed, train  # pylint: disable=g-import-not-at-top
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
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
