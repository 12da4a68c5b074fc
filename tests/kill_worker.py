"""A training run that SIGKILLs itself at a chosen point (run as a script by the tests and by
benchmarks/faults.py). Usage:

  python tests/kill_worker.py WORKDIR DATA_DIR MODE [N [FEATURES | VIDEO_DIR]]

MODE: none (train to the end), step (die while step N is in flight), checkpoint (die in the
middle of writing the checkpoint of step N, after its files, before the commit), after_save (die
right after the checkpoint of step N is complete), time (die N milliseconds after training
starts, wherever the run is then), sigint (a Ctrl-C while step N is in flight), sigint_twice (a
Ctrl-C while step N is in flight, and another while the checkpoint that the first one asked for
is being written). Like `python -m dcrn_jax.main`, the worker exits with one line and code 2 on
a user error and code 130 after a Ctrl-C.
The config is tiny_config() below: moving_digits through the real tf.data path, with dropout.
FEATURES=accumulate_ema: a CNN with batch norm and dropout on in-memory synthetic images instead,
2 micro-batches per update (optim.accumulate_steps) and a moving average of the weights
(optim.ema_decay), 18 steps. FEATURES=cifar10_augment: configs/cifar10_cnn.py, smaller, on
TFDS cifar10 mock data (tests/tfds_mock.py, 64 examples per split) resident on the device
(data.on_device=True) with the device's random crop and flip, 24 steps. With a VIDEO_DIR (an existing folder), video_config(): that
folder's videos read from their prepared video shards.
"""

import contextlib
import os
import pathlib
import signal
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import orbax.checkpoint._src.path.atomicity as atomicity  # pylint: disable=g-import-not-at-top

from configs import cifar10_cnn, video_gru  # pylint: disable=g-import-not-at-top
from dcrn_jax import checkpoint, cli, data, train  # pylint: disable=g-import-not-at-top


def tiny_config(data_dir, features=""):
  if features == "cifar10_augment":
    return cifar10_augment_config(data_dir)
  c = video_gru.get_config()
  c.data.data_dir = data_dir
  c.data.num_frames, c.data.image_size = 4, 32
  c.data.num_train_examples, c.data.num_test_examples = 256, 32
  c.model.stem_stride, c.model.conv_features = 2, (8, 16)
  c.model.embed_dim, c.model.hidden_size, c.model.dropout = 32, 32, 0.2
  c.batch_size, c.eval_batch_size = 16, 32
  c.num_train_steps, c.log_every_steps = 36, 1
  c.eval_every_steps, c.checkpoint_every_steps = 0, 6
  c.optim.learning_rate, c.optim.warmup_steps = 3e-3, 4
  c.progress_bar = False
  if features == "accumulate_ema":
    c.data.name, c.data.synthetic_shape = "synthetic", (32, 32, 1)
    c.data.synthetic_num_examples = 256
    c.model.name, c.model.batch_norm = "cnn", True
    c.optim.accumulate_steps, c.optim.ema_decay = 2, 0.9
    c.num_train_steps = 18
  elif features:
    raise SystemExit(f"unknown features {features}")
  return c


CIFAR10_MOCK_EXAMPLES = 64


def cifar10_augment_config(data_dir):
  """configs/cifar10_cnn.py made small, on the device, with crop and flip (batch norm and
  dropout kept): 4 batches an epoch, so 24 steps reshuffle 6 times."""
  c = cifar10_cnn.get_config()
  c.data.data_dir = data_dir
  c.data.on_device = True
  c.data.augment_crop_padding, c.data.augment_flip = 4, True
  c.model.conv_features, c.model.convs_per_block, c.model.embed_dim = (8, 16), 1, 32
  c.batch_size, c.eval_batch_size = 16, 32
  c.num_train_steps, c.log_every_steps = 24, 1
  c.eval_every_steps, c.checkpoint_every_steps = 0, 6
  c.optim.warmup_steps = 4
  c.progress_bar = False
  return c


def mocked_data(data_dir, features):
  """The TFDS mock a FEATURES setting trains on (a context manager; none for the others)."""
  if features != "cifar10_augment":
    return contextlib.nullcontext()
  import tfds_mock  # pylint: disable=g-import-not-at-top
  return tfds_mock.mock("cifar10", CIFAR10_MOCK_EXAMPLES,
                        os.path.join(data_dir, "cifar10_metadata"))


def video_config(data_dir, video_dir):
  """tiny_config on VIDEO_DIR's <split>/<class>/ videos, read from prepared video shards."""
  c = tiny_config(data_dir)
  c.data.name, c.data.video_dir, c.data.video_cache = "video_folder", video_dir, True
  c.data.num_frames, c.data.frame_stride, c.data.image_size, c.data.resize_short = 3, 2, 24, 28
  c.data.augment_flip = True
  c.batch_size, c.eval_batch_size = 4, 8
  c.num_train_steps, c.checkpoint_every_steps = 12, 4
  return c


def die():
  sys.stdout.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def ctrl_c():
  os.kill(os.getpid(), signal.SIGINT)


# The loop reads batches of pixels (streamed) or of row indices (a split on the device): the
# same stream either way, so the kill lands at the same batch.
_STREAMS = ("train_batches", "train_indices")


def _at_step(n: int, action, micro_batches: int = 1):
  """Runs `action` while step n is in flight."""
  for name in _STREAMS:
    _wrap_at_step(name, n, action, micro_batches)


def _wrap_at_step(name, n, action, micro_batches):
  real = getattr(data, name)

  def batches(*args, start_step=0, **kwargs):
    # The loop prefetches 2 batches: batch n + 2 is drawn while step n is dispatched (with
    # accumulation, batches count micro-batches, and that is step n's last).
    for i, batch in enumerate(real(*args, start_step=start_step, **kwargs)):
      if start_step + i == n * micro_batches + 2:
        action()
      yield batch
  setattr(data, name, batches)


def arm(mode: str, n: int, micro_batches: int = 1):
  if mode == "step":
    _at_step(n, die, micro_batches)
  elif mode in ("sigint", "sigint_twice"):
    _at_step(n, ctrl_c)
    if mode == "sigint_twice":
      every = tiny_config("").checkpoint_every_steps
      real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

      def finalize(self, *args, **kwargs):
        name = os.path.basename(str(self.get()))  # N.orbax-checkpoint-tmp...: a step's folder.
        step = int(name.split(".")[0]) if name.split(".")[0].isdigit() else 0
        if step % every:  # Not a periodic save: the one the first Ctrl-C asked for.
          ctrl_c()
          time.sleep(5)  # The write is still going on when the second Ctrl-C lands.
        return real_finalize(self, *args, **kwargs)
      atomicity.AtomicRenameTemporaryPath.finalize = finalize
  elif mode == "checkpoint":
    real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    def finalize(self, *args, **kwargs):
      if f"{os.sep}{n}.orbax-checkpoint-tmp" in str(self.get()):
        die()
      return real_finalize(self, *args, **kwargs)
    atomicity.AtomicRenameTemporaryPath.finalize = finalize
  elif mode == "after_save":
    real_save = checkpoint.Checkpointer.save

    def save(self, state, **kwargs):
      started = real_save(self, state, **kwargs)
      if int(state.step) == n:
        self.wait()
        die()
      return started
    checkpoint.Checkpointer.save = save
  elif mode == "time":
    for name in _STREAMS:
      _wrap_timed(name, n)
  elif mode != "none":
    raise SystemExit(f"unknown mode {mode}")


def _wrap_timed(name, n):
  real = getattr(data, name)

  def batches(*args, **kwargs):
    # The clock starts with the first batch, after imports and dataset preparation.
    threading.Timer(n / 1000, die).start()
    yield from real(*args, **kwargs)
  setattr(data, name, batches)


if __name__ == "__main__":
  workdir, data_dir, mode = sys.argv[1:4]
  extra = sys.argv[5] if len(sys.argv) > 5 else ""
  config = (video_config(data_dir, extra) if os.path.isdir(extra) else
            tiny_config(data_dir, extra))
  arm(mode, int(sys.argv[4]) if len(sys.argv) > 4 else 0, config.optim.accumulate_steps)
  with cli.user_errors(verbose=False), mocked_data(data_dir, extra):
    train.train_and_evaluate(config, workdir)
  print("finished", flush=True)
