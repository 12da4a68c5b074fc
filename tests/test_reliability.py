"""Kill-and-resume exactness, crash-safe checkpoints, the NaN guard, and the bad-input catalogue."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dcrn_jax import UserError, checkpoint, data, train
from dcrn_jax.state import init_variables

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fault_catalogue  # pylint: disable=g-import-not-at-top,wrong-import-position
import kill_worker  # pylint: disable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  data.get_info(kill_worker.tiny_config(path).data)  # Prepared once, before any child runs.
  return path


def worker(workdir, data_dir, mode="none", n=0, features="", compilation_cache=""):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  if compilation_cache:  # Later runs of the same program load its executables from there.
    env["JAX_COMPILATION_CACHE_DIR"] = compilation_cache
  return subprocess.run([sys.executable, str(HERE / "kill_worker.py"), str(workdir), data_dir,
                         mode, str(n), features], env=env, capture_output=True, text=True,
                        timeout=600)


def params_at_end(workdir, data_dir, features="", ema=False):
  config = kill_worker.tiny_config(data_dir, features)
  info = data.get_info(config.data)
  model = train.create_model(config.model, num_classes=info.num_classes,
                             input_shape=info.input_shape)
  abstract = jax.eval_shape(lambda: init_variables(model, info.input_shape, jax.random.key(0)))
  step, variables = checkpoint.Checkpointer(str(workdir), read_only=True).restore_variables(
      None, abstract, ema=ema)
  return step, jax.tree.map(np.asarray, variables)


def last_logged_step(workdir):
  lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
  return max(json.loads(x)["step"] for x in lines if x.strip())


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  r = worker(workdir, data_dir)
  assert r.returncode == 0 and "finished" in r.stdout, r.stderr[-3000:]
  return params_at_end(workdir, data_dir)


# Long end-to-end runs (two or three training processes each, ~1 min): -m slow runs them; the
# default suite keeps a second Ctrl-C and the in-process resume tests.
@pytest.mark.slow
@pytest.mark.parametrize("mode,n", [("step", 15), ("checkpoint", 18), ("after_save", 12)])
def test_sigkill_then_same_command_ends_bitwise_equal(mode, n, data_dir, reference, tmp_path):
  killed = worker(tmp_path, data_dir, mode, n)
  assert killed.returncode == -9, killed.stderr[-3000:]
  reached = last_logged_step(tmp_path)
  ckpts = os.listdir(tmp_path / "checkpoints")
  if mode == "checkpoint":  # The step being written is a partial folder; the one before is whole.
    assert f"{n}.orbax-checkpoint-tmp" in ckpts and str(n) not in ckpts
  resumed = worker(tmp_path, data_dir)
  assert resumed.returncode == 0 and "finished" in resumed.stdout, resumed.stderr[-3000:]
  # The killed run's WORKDIR/train.lock names it, but the OS dropped its lock: taken over.
  assert f"note: took over {tmp_path / 'train.lock'} from pid " in resumed.stdout
  start = int(resumed.stdout.split("resuming from step ")[1].split()[0])
  expected_start = {"step": 12, "checkpoint": 12, "after_save": 12}[mode]
  assert start == expected_start
  assert 0 <= reached - start <= 6  # No more than checkpoint_every_steps lost.
  assert not [c for c in os.listdir(tmp_path / "checkpoints") if "tmp" in c]
  records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [r["step"] for r in records if r["split"] == "train"]
  assert logged == list(range(1, 37))  # Redone steps are logged once.

  step, variables = params_at_end(tmp_path, data_dir)
  ref_step, ref_variables = reference
  assert step == ref_step == 36
  jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)


@pytest.mark.slow  # Three runs in subprocesses (~40 s of CPU); the loop's resume is tested above.
def test_accumulation_and_ema_resume_bitwise_after_sigkill(data_dir, tmp_path):
  features = "accumulate_ema"  # 2 micro-batches per update, EMA, batch norm; 18 steps.
  cache = str(tmp_path / "jax_cache")
  reference = tmp_path / "reference"
  r = worker(reference, data_dir, features=features, compilation_cache=cache)
  assert r.returncode == 0 and "finished" in r.stdout, r.stderr[-3000:]
  killed = worker(tmp_path / "run", data_dir, "step", 9, features, cache)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert 9 <= last_logged_step(tmp_path / "run") < 12
  resumed = worker(tmp_path / "run", data_dir, features=features, compilation_cache=cache)
  assert resumed.returncode == 0 and "resuming from step 6" in resumed.stdout, resumed.stderr
  for ema in (False, True):  # Trained weights with batch statistics, then the averaged ones.
    step, variables = params_at_end(tmp_path / "run", data_dir, features, ema=ema)
    ref_step, ref_variables = params_at_end(reference, data_dir, features, ema=ema)
    assert step == ref_step == 18
    jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)
  records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train_records = [r for r in records if r["split"] == "train"]
  assert [(r["step"], r["micro_step"]) for r in train_records] == [(s, 2 * s) for s in range(1, 19)]
  ref_records = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
  assert [r["loss"] for r in train_records] == [r["loss"] for r in ref_records
                                                if r["split"] == "train"]


def _restored_variables(workdir):
  """(step, numpy variables) of the latest checkpoint of a run, read as predict reads it (no
  dataset needed: the input shape comes from WORKDIR/input.json)."""
  from dcrn_jax import predict  # pylint: disable=g-import-not-at-top
  config = predict.read_run_config(str(workdir))
  _, _, step, variables = predict.restore_model(str(workdir), config, num_classes=10)
  return step, jax.tree.map(np.asarray, variables)


@pytest.mark.slow  # Three training processes on CIFAR-10 mock data (~1-2 min on 2 busy cores).
def test_augmented_on_device_run_resumes_bitwise_after_sigkill(tmp_path):
  """configs/cifar10_cnn.py (small) on the device with its crop and flip drawn there from the
  step's key: killed at step 15, resumed from 12, it ends as the uninterrupted run does."""
  features, data_dir = "cifar10_augment", str(tmp_path / "tfds")
  cache = str(tmp_path / "jax_cache")
  reference = tmp_path / "reference"
  r = worker(reference, data_dir, features=features, compilation_cache=cache)
  assert r.returncode == 0 and "finished" in r.stdout, r.stderr[-3000:]
  assert "streams from the host" not in r.stdout  # on_device=True: resident, or an error.
  killed = worker(tmp_path / "run", data_dir, "step", 15, features, cache)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert 12 < last_logged_step(tmp_path / "run") < 18  # The feeding thread draws ahead.
  resumed = worker(tmp_path / "run", data_dir, features=features, compilation_cache=cache)
  assert resumed.returncode == 0 and "resuming from step 12" in resumed.stdout, resumed.stderr
  step, variables = _restored_variables(tmp_path / "run")
  ref_step, ref_variables = _restored_variables(reference)
  assert step == ref_step == 24
  jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)  # Params, batch stats.
  losses = [[r["loss"] for r in map(json.loads, (w / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "train"] for w in (tmp_path / "run", reference)]
  assert len(losses[0]) == 24 and losses[0] == losses[1]


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_ctrl_c_saves_at_the_interrupt_step_and_the_same_command_resumes_bitwise(
    data_dir, reference, tmp_path):
  stopped = worker(tmp_path, data_dir, "sigint", 15)
  assert stopped.returncode == 130, stopped.stderr[-3000:]
  line = stopped.stderr.strip().splitlines()[-1]
  assert line.startswith("interrupted (Ctrl-C): saved a checkpoint at step "), line
  step = int(line.split("at step ")[1].split(";")[0])
  assert 15 <= step <= 17  # The step in flight finishes; nothing after it runs.
  assert sorted(int(c) for c in os.listdir(tmp_path / "checkpoints")) == [6, 12, step]
  assert last_logged_step(tmp_path) == step
  resumed = worker(tmp_path, data_dir)
  assert resumed.returncode == 0 and f"resuming from step {step}" in resumed.stdout
  final_step, variables = params_at_end(tmp_path, data_dir)
  ref_step, ref_variables = reference
  assert final_step == ref_step == 36
  jax.tree.map(np.testing.assert_array_equal, variables, ref_variables)


def test_a_second_ctrl_c_during_that_save_leaves_no_partial_checkpoint(data_dir, tmp_path):
  stopped = worker(tmp_path, data_dir, "sigint_twice", 15)
  assert stopped.returncode == 130, stopped.stderr[-3000:]
  line = stopped.stderr.strip().splitlines()[-1]
  assert line.startswith("aborted at step ") and "latest checkpoint, step 12" in line, line
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["12", "6"]
  assert "Traceback" not in stopped.stderr


def _with_nan_at(monkeypatch, bad_step):
  """Streamed batches (the config must set data.on_device=False) with NaN inputs at bad_step:
  float inputs, which the step takes as they are (pixels cannot be NaN)."""
  real = data.train_batches

  def batches(*args, start_step=0, **kwargs):
    for i, batch in enumerate(real(*args, start_step=start_step, **kwargs)):
      if start_step + i + 1 == bad_step:
        batch = dict(batch, inputs=np.full(batch["inputs"].shape, np.nan, np.float32))
      yield batch
  monkeypatch.setattr(data, "train_batches", batches)


def test_nan_stops_with_the_step_and_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
  _with_nan_at(monkeypatch, 9)
  config = kill_worker.tiny_config(data_dir)
  config.data.on_device = False
  config.log_every_steps = 4
  with pytest.raises(UserError, match="NaN/Inf at step 9; .* Last good checkpoint: step 6"):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [6]
  _, variables = params_at_end(tmp_path, data_dir)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_nan_step_can_be_skipped_and_counted(data_dir, tmp_path, monkeypatch):
  _with_nan_at(monkeypatch, 9)
  config = kill_worker.tiny_config(data_dir)
  config.data.on_device = False
  config.on_nonfinite = "skip"
  config.num_train_steps = 12
  result = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(result["loss"])
  records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_records = {r["step"]: r for r in records if r["split"] == "train"}
  assert train_records[9]["nonfinite_steps"] == 1 and train_records[8]["nonfinite_steps"] == 0
  assert train_records[12]["skipped_steps"] == 1
  assert "clipped" in train_records[12] and "learning_rate" in train_records[12]


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_disk_full_during_a_checkpoint_is_a_clear_error(data_dir, tmp_path, monkeypatch):
  real_save = checkpoint.ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 12:
      raise OSError(28, "No space left on device")
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", save)
  with pytest.raises(UserError, match=r"^cannot write the checkpoint of step 12 .*: No space left "
                     r"on device \(.* free on its filesystem\); the checkpoints up to step 6 are "
                     r"intact: the same command resumes from step 6"):
    train.train_and_evaluate(kill_worker.tiny_config(data_dir), str(tmp_path))
  monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", real_save)
  train.train_and_evaluate(kill_worker.tiny_config(data_dir), str(tmp_path))  # Resumes from 6.


# Faults that need a trained run first (~20-35 s each) are slow; the rest stay in the default suite.
_SLOW_FAULTS = ("incompatible checkpoint", "damaged checkpoint", "checkpoint missing an item",
                "eval of a missing step", "other model in a trained workdir",
                "older workdir without a run-defining field", "full disk at a checkpoint save")


@pytest.mark.parametrize("fault", [
    pytest.param(f, marks=pytest.mark.slow) if f[0] in _SLOW_FAULTS else f
    for f in fault_catalogue.FAULTS], ids=[f[0] for f in fault_catalogue.FAULTS])
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(fault, tmp_path):
  ok, detail = fault_catalogue.run_fault(str(tmp_path), *fault)
  assert ok, detail


def test_images_of_inconsistent_shapes_are_refused(tmp_path):
  from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top

  class VariedImagesForTest(tfds.core.GeneratorBasedBuilder):
    """Images of two different sizes: nothing a fixed-shape batch can hold."""
    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      return epath.Path(__file__)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 1)),
          "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(), "test": self._generate_examples()}

    def _generate_examples(self):
      for i, size in enumerate((8, 12)):
        yield i, {"image": np.zeros((size, size, 1), np.uint8), "label": i}

  VariedImagesForTest(data_dir=str(tmp_path)).download_and_prepare()
  config = kill_worker.tiny_config(str(tmp_path)).data
  config.name = "varied_images_for_test"
  with pytest.raises(UserError, match="reads only fixed-size uint8 images"):
    data.get_info(config)
