"""python -m dcrn_jax.main --config=configs/video_gru.py --workdir=DIR [--mode=eval]

Wires flags to dcrn_jax.train. Any config field can be overridden, e.g.
--config.batch_size=16 --config.model.hidden_size=64 (see dcrn_jax/cli.py for how).
Every config field is listed, with what it does, in configs/default.py; a config's own values:
python -c "from configs import video_gru; print(video_gru.get_config())".
"""

from absl import app, flags

from dcrn_jax import cli

FLAGS = flags.FLAGS


def define_flags():
  """This command's flags; defined only when it runs (under __main__), so that importing the
  module beside the other commands defines no flag twice."""
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
  flags.DEFINE_enum("mode", "train", ["train", "eval"],
                    "train (resumes from WORKDIR if it holds checkpoints) or eval.")
  flags.DEFINE_integer("profile_steps", 0,
                       "Record a JAX profiler trace of this many training steps, after the first "
                       "(compiling) one, into WORKDIR/profile (TensorBoard profile plugin, "
                       "Perfetto); 0: none.")
  flags.DEFINE_bool("verbose", False,
                    "Show library logs and warnings, and the traceback of errors.")
  flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                    "Start JAX's distributed runtime: auto (when a coordinator is given, or on a "
                    "SLURM job or Cloud TPU pod of several processes), on (always), off.")
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (else $JAX_NUM_PROCESSES).")
  flags.DEFINE_integer("process_id", None, "This process's id (else $JAX_PROCESS_ID).")
  flags.DEFINE_list("local_device_ids", None,
                    "Devices this process uses, e.g. 0,1 (else $JAX_LOCAL_DEVICE_IDS).")
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_libraries(FLAGS.verbose)
  from dcrn_jax import distributed, host, train  # pylint: disable=g-import-not-at-top
  host.configure()  # Freed memory kept for the next step; our XLA:CPU flags (host.py).
  with cli.user_errors(FLAGS.verbose):
    distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes,
                           FLAGS.process_id,
                           [int(i) for i in FLAGS.local_device_ids or ()] or None)
    if FLAGS.mode == "train":
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir, profile_steps=FLAGS.profile_steps)
    else:
      train.evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
