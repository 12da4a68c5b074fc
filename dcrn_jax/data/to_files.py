"""python -m dcrn_jax.data.to_files --workdir=DIR --out=FOLDER [--num=16]

Writes the first `num` examples of a run's eval split as files, OUT/<class name>/<id>.mkv (clips,
lossless FFV1) or .png (images), so that predict can be tried on files whose classes are known:

    python -m dcrn_jax.predict --workdir=DIR FOLDER

The pixels are those evaluation reads (the source's uint8, before any scaling), so predictions on these files
equal evaluation's on the same examples. For datasets of stored clips and images; a
video_folder run's eval videos are files already.
"""

import os
import sys

from absl import app, flags
import numpy as np

from dcrn_jax import cli
from dcrn_jax.errors import UserError

FLAGS = flags.FLAGS


def folder_name(class_name: str) -> str:
  """A class name as a folder name ('T-shirt/top' -> 'T-shirt_top')."""
  return class_name.replace("/", "_").replace(os.sep, "_") or "_"


def write_examples(workdir: str, out: str, num: int) -> list[str]:
  """Writes the files (module docstring); returns their paths."""
  from dcrn_jax import data, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data import files  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  if num < 1:
    raise UserError(f"--num={num} must be 1 or more")
  config = workdir_lib.read_config(workdir)
  class_names = workdir_lib.read_class_names(workdir)
  d = config.data
  if d.name == "video_folder":
    raise UserError(f"the eval videos of this run are files already: "
                    f"{os.path.join(d.video_dir, d.eval_split)}")
  info = data.get_info(d)
  if info.eval_views > 1 or len(info.input_shape) not in (3, 4):
    raise UserError(f"{d.name} is not a dataset of stored clips or images; write its videos "
                    "yourself")
  written = []
  for batch in data.eval_batches(d, local_batch_size=min(num, 64), scaled=False):
    for x, label, mask, example_id in zip(batch["inputs"], batch["label"], batch["mask"],
                                          batch["example_id"]):
      if mask == 0 or len(written) >= num:
        continue
      folder = os.path.join(out, folder_name(class_names[int(label)]))
      os.makedirs(folder, exist_ok=True)
      pixels = (np.asarray(x, np.uint8) if np.issubdtype(x.dtype, np.integer) else
                np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))  # Float in [0, 1].
      if pixels.ndim == 4:
        path = os.path.join(folder, f"{int(example_id):05d}.mkv")
        video_files.write_video(path, pixels)
      else:
        path = os.path.join(folder, f"{int(example_id):05d}.png")
        files.write_image(path, pixels)
      written.append(path)
    if len(written) >= num:
      break
  return written


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_libraries(FLAGS.verbose)
  with cli.user_errors(FLAGS.verbose):
    written = write_examples(FLAGS.workdir, FLAGS.out, FLAGS.num)
    print(f"wrote {len(written)} file(s) under {FLAGS.out}/<class name>/", file=sys.stderr)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "The workdir of a training run.")
  flags.DEFINE_string("out", None, "Folder to write <class name>/<example id>.mkv|png into.")
  flags.DEFINE_integer("num", 16, "Examples to write, from the start of the eval split.")
  flags.DEFINE_bool("verbose", False, "Show library logs and warnings, and tracebacks.")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main, flags_parser=cli.parse_plain_flags)
