"""python -m dcrn_jax.report --workdir=DIR [--out=DIR/report] [--num_examples=12]

Writes the HTML report of a trained workdir (see dcrn_jax/report/__init__.py); the run's
config.json says everything else, so no --config is needed.
"""

import sys

from absl import app, flags

from dcrn_jax import cli

FLAGS = flags.FLAGS


def define_flags():
  """This command's flags; defined only when it runs (under __main__), so that importing the
  module beside the other commands defines no flag twice."""
  flags.DEFINE_string("workdir", None, "The workdir of a training run.")
  flags.DEFINE_string("out", None, "Folder of the report (default: WORKDIR/report).")
  flags.DEFINE_integer("num_examples", 12, "Examples in the gallery (0: none).")
  flags.DEFINE_integer("profile_clips", 256,
                       "Eval clips whose per-frame importance is averaged (0: none).")
  flags.DEFINE_integer("ig_steps", 32, "Integrated-gradients steps per example.")
  flags.DEFINE_string("occlusion_fill", "neighbours",
                      "What replaces an occluded frame: neighbours (the mean of the frames "
                      "before and after it) or mean (the clip's mean frame).")
  flags.DEFINE_bool("verbose", False,
                    "Show library logs and warnings, and the traceback of errors.")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a bad or missing flag reported as one `error:` line (exit 2)."""
  cli.exit_on_help(argv, reads_config=False)
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    cli.fail(f"{' '.join(str(e).split())} (see --helpshort)")
  if not FLAGS.workdir:
    cli.fail("--workdir=DIR is required: the workdir of a training run")
  return rest


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}")
  cli.quiet_libraries(FLAGS.verbose)
  from dcrn_jax import host  # pylint: disable=g-import-not-at-top
  from dcrn_jax.report import build_report  # pylint: disable=g-import-not-at-top
  host.tune_malloc()
  with cli.user_errors(FLAGS.verbose):
    build_report(FLAGS.workdir, FLAGS.out, num_examples=FLAGS.num_examples,
                 profile_clips=FLAGS.profile_clips, ig_steps=FLAGS.ig_steps,
                 fill=FLAGS.occlusion_fill, log=lambda line: print(line, flush=True))
  sys.stdout.flush()


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
