"""python -m dcrn_jax.prepare --config=CONFIG [--config.data.x=...]

Makes the configured dataset ready before training, so runs (and the processes of a multi-host
run) start reading at once:

- data.name=video_folder: decodes every split's videos once into the prepared video shards
  (dcrn_jax/datasets/video_shards/) that data.video_cache=True reads, whatever
  data.video_cache is set to. Shards that are ready are kept; shards of a source folder that
  changed since are rebuilt; a preparation that was killed resumes with the videos not yet done.
- our TFDS datasets (moving_digits, moving_fashion) and fashion_mnist from local files: prepared
  into data.data_dir as the first run would.
"""

from absl import app, flags

from dcrn_jax import cli

FLAGS = flags.FLAGS


def define_flags():
  """This command's flags; defined only when it runs (under __main__), so that importing the
  module beside the other commands defines no flag twice."""
  flags.DEFINE_bool("verbose", False,
                    "Show library logs and warnings, and the traceback of errors.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_libraries(FLAGS.verbose)
  from dcrn_jax import data  # pylint: disable=g-import-not-at-top
  with cli.user_errors(FLAGS.verbose):
    config = FLAGS.config.data
    if config.name == "video_folder":
      from dcrn_jax.datasets.video_shards import builder  # pylint: disable=g-import-not-at-top
      prepared = builder.ensure(config, rebuild=True)
      sizes = ", ".join(f"{split} {len(v['path'])}" for split, v in sorted(prepared.videos.items()))
      print(f"ready: {prepared.path} ({sizes} videos, {len(prepared.class_names)} classes, "
            f"{len(prepared.skipped)} skipped); train from it with "
            "--config.data.video_cache=True", flush=True)
    else:
      info = data.get_info(config)
      print(f"ready: {config.name} ({info.num_train_examples} train / {info.num_eval_examples} "
            f"eval examples of shape {info.input_shape})", flush=True)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
