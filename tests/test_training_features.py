"""Gradient accumulation, EMA, durations in epochs, the best checkpoint, mixed precision: each
through the real loop on tiny in-memory (synthetic) data."""

import contextlib
import gzip
import io
import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import video_gru
from dcrn_jax import UserError, checkpoint, durations, evaluation, optim, parallel, train
from dcrn_jax import state as state_lib, tasks, workdir as workdir_lib
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.models import create_model
from dcrn_jax.models.classifiers import MODELS

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.


def tiny_config(**overrides):
  """A small CNN on 64 random 16x16 images: the features under test do not depend on the
  model, and this one compiles in a few seconds (the recurrent models take several times
  longer)."""
  c = video_gru.get_config()
  c.model.name = "cnn"
  c.data.name = "synthetic"
  c.data.synthetic_shape, c.data.synthetic_num_examples = (16, 16, 1), 64
  c.model.stem_stride, c.model.conv_features = 2, (4, 8)
  c.model.embed_dim, c.model.hidden_size = 16, 16
  c.batch_size, c.eval_batch_size = 8, 32
  c.num_train_steps, c.log_every_steps = 6, 1
  c.eval_every_steps, c.checkpoint_every_steps = 0, 0
  c.optim.learning_rate, c.optim.warmup_steps = 1e-2, 1
  c.progress_bar = False
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def records(workdir, split=None):
  lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if split is None or r["split"] == split]


def numpy_tree(tree):
  return jax.tree.map(np.asarray, tree)


def _fit_recording(config, workdir, profile_steps=0):
  """train.fit, also recording (parameters, step) before the first micro-batch and after
  every one."""
  after_each, real = [], train.make_train_step

  def recording(*args, **kwargs):
    step_fn = real(*args, **kwargs)

    def run(state, batch, rng):
      if not after_each:
        after_each.append((numpy_tree(state.params), int(state.step)))
      new_state, metrics = step_fn(state, batch, rng)
      after_each.append((numpy_tree(new_state.params), int(new_state.step)))
      return new_state, metrics
    return run
  train.make_train_step = recording
  try:
    return train.fit(config, workdir, profile_steps=profile_steps), after_each
  finally:
    train.make_train_step = real


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Three runs over the same 128 examples (2 epochs of 64): one batch of 16 per update; two
  micro-batches of 8 per update with EMA, length and periods given in steps, with a profiler
  trace of 3 steps; the same in epochs."""
  root = tmp_path_factory.mktemp("runs")
  accumulate = {"batch_size": 8, "optim.accumulate_steps": 2, "optim.ema_decay": 0.5}
  configs = {
      "big": tiny_config(batch_size=16, num_train_steps=8, log_every_steps=2),
      "steps": tiny_config(**accumulate, num_train_steps=8, log_every_steps=2,
                           eval_every_steps=4, checkpoint_every_steps=2),
      "epochs": tiny_config(**accumulate, **{
          "num_train_steps": 0, "num_epochs": 2.0, "log_every_steps": 0,
          "log_every_epochs": 0.5, "eval_every_epochs": 1.0, "checkpoint_every_epochs": 0.5}),
  }
  out = {}
  for name, config in configs.items():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      (state, result), after_each = _fit_recording(config, str(root / name),
                                                   profile_steps=3 if name == "steps" else 0)
    out[name] = types.SimpleNamespace(state=state, result=result, config=config,
                                      workdir=root / name, printed=printed.getvalue(),
                                      after_each=after_each)
  return out


def test_accumulated_micro_batches_give_the_parameters_of_one_big_batch(runs):
  # The synthetic stream cuts batches from one shuffled order, so 2 micro-batches of 8 hold the
  # 16 examples of one batch of 16. Clipping (grad_clip_norm=1) applies to the mean of both.
  big, acc = runs["big"], runs["steps"]
  assert int(big.state.step) == int(acc.state.step) == 8  # Steps count updates ...
  assert [step for _, step in acc.after_each] == [s // 2 for s in range(17)]  # ... 2 each.
  opt_state = acc.state.opt_state
  assert int(opt_state.gradient_step) == 8 and int(opt_state.mini_step) == 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               numpy_tree(big.state.params), numpy_tree(acc.state.params))
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), numpy_tree(big.state.params),
                       big.after_each[0][0])
  assert max(jax.tree.leaves(moved)) > 1e-2  # Training moved them far beyond the tolerance.
  logged_big, logged_acc = records(big.workdir, "train"), records(acc.workdir, "train")
  assert [r["micro_step"] for r in logged_acc] == [4, 8, 12, 16]
  assert "micro_step" not in logged_big[0]
  for a, b in zip(logged_big, logged_acc):  # The update's gradient and the schedule agree too.
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(a["learning_rate"], b["learning_rate"], rtol=1e-7)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_logs_name_updates_and_micro_steps_and_the_profile_holds_a_trace(runs):
  run = runs["steps"]
  assert "[train] step 8/8 (micro-step 16) | " in run.printed
  assert "[test_ema] step 8/8 | " in run.printed and "[test] step 8/8 | " in run.printed
  profile = run.workdir / "profile"
  assert f"profile: 3 step(s) after step 1 traced into {profile}" in run.printed
  traces = list((profile / "plugins" / "profile").iterdir())
  assert len(traces) == 1 and list(traces[0].glob("*.xplane.pb")), traces
  with gzip.open(traces[0] / "perfetto_trace.json.gz") as f:  # What ui.perfetto.dev opens.
    events = json.load(f)["traceEvents"]
  assert any("train_step" in str(e.get("name", "")) for e in events)
  assert not (runs["epochs"].workdir / "profile").exists()  # Only when asked for.


def test_num_epochs_and_num_train_steps_give_the_same_run(runs):
  # 64 examples, 8 x 2 micro-batches per update: 4 steps per epoch.
  in_epochs, in_steps = runs["epochs"], runs["steps"]
  assert ("note: num_epochs=2 -> num_train_steps=8 (4 steps per epoch: 64 train examples / 16 "
          "per update (8 x 2 micro-batches))") in in_epochs.printed
  for line in ("log_every_epochs=0.5 -> log_every_steps=2",
               "eval_every_epochs=1 -> eval_every_steps=4",
               "checkpoint_every_epochs=0.5 -> checkpoint_every_steps=2"):
    assert f"note: {line}\n" in in_epochs.printed
  assert "note: num_train_steps=8 is 2.00 epochs" in in_steps.printed
  for a, b in ((in_epochs.state.params, in_steps.state.params),
               (in_epochs.state.ema_params, in_steps.state.ema_params)):
    jax.tree.map(np.testing.assert_array_equal, numpy_tree(a), numpy_tree(b))
  drop_speed = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rs]
  assert drop_speed(records(in_epochs.workdir)) == drop_speed(records(in_steps.workdir))
  assert [(r["step"], r["epoch"]) for r in records(in_steps.workdir, "train")] == [
      (2, 0.5), (4, 1.0), (6, 1.5), (8, 2.0)]
  assert checkpoint.Checkpointer(str(in_epochs.workdir)).all_steps() == [4, 6, 8]


def test_ema_moves_once_per_update_and_is_logged_and_evaluated(runs):
  run, decay = runs["steps"], 0.5
  expected = run.after_each[0][0]  # The average starts at the initial parameters.
  for params, _ in run.after_each[2::2]:  # Updates complete on every 2nd micro-batch.
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expected, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               numpy_tree(run.state.ema_params), expected)
  splits = [(r["step"], r["split"]) for r in records(run.workdir) if r["split"] != "train"]
  assert splits == [(4, "test"), (4, "test_ema"), (8, "test"), (8, "test_ema")]
  last_ema, last_trained = records(run.workdir, "test_ema")[-1], records(run.workdir, "test")[-1]
  assert run.result["loss"] == last_ema["loss"] != last_trained["loss"]  # ema_eval counts.
  config = run.config.copy_and_resolve_references()
  evaluated = train.evaluate(config, str(run.workdir))  # Restores the 'ema' item.
  assert evaluated["weights"] == "ema" and evaluated["loss"] == pytest.approx(last_ema["loss"])
  config.optim.ema_eval = False
  trained = train.evaluate(config, str(run.workdir))
  assert trained["weights"] == "trained"
  assert trained["loss"] == pytest.approx(last_trained["loss"])


def test_durations_resolve_from_the_examples_per_update():
  config = tiny_config(num_train_steps=0, num_epochs=2.5, eval_every_steps=0,
                       eval_every_epochs=0.3)
  config.batch_size = 32
  info = DatasetInfo(num_classes=3, input_shape=(4, 8, 8, 1), num_train_examples=1000,
                     num_eval_examples=8, class_names=("a", "b", "c"))
  plan = types.SimpleNamespace(metric_names=("accuracy", "loss"))
  resolved, notes = train.resolve_config(config, info, plan)  # 31.25 steps per epoch.
  assert (resolved.num_train_steps, resolved.eval_every_steps) == (78, 9)
  assert config.num_train_steps == 0  # The input is left as it was.
  assert notes[0].startswith("num_epochs=2.5 -> num_train_steps=78 (31.25 steps per epoch")
  tiny_epoch = tiny_config(num_train_steps=0, num_epochs=0.01)
  lengths = durations.Lengths(**{f: tiny_epoch[f] for f in durations.Lengths.__dataclass_fields__})
  resolved, _ = durations.resolve(lengths, 64, tiny_epoch.batch_size, accumulate_steps=1)
  assert resolved.num_train_steps == 1  # At least one.
  assert durations.examples_per_epoch(1001, 4, shard_by_process=True) == 1000
  assert durations.examples_per_epoch(1001, 4, shard_by_process=False) == 1001


@pytest.mark.parametrize("overrides,message", [
    ({"num_epochs": 3.0}, "num_train_steps=6 and num_epochs=3.0 are both set"),
    ({"num_train_steps": 0}, "neither num_train_steps nor num_epochs is set"),
    ({"num_train_steps": 0, "num_epochs": -1.0}, "num_epochs=-1.0 must be positive"),
    ({"eval_every_steps": 5, "eval_every_epochs": 1.0},
     "eval_every_steps=5 and eval_every_epochs=1.0 are both set"),
    ({"checkpoint_every_epochs": -0.5}, "checkpoint_every_epochs=-0.5 must be >= 0"),
    ({"log_every_steps": 0}, "log_every_steps=0 must be positive"),
    ({"optim.accumulate_steps": 0}, "optim.accumulate_steps=0 must be >= 1"),
    ({"optim.ema_decay": 1.0}, r"optim.ema_decay=1.0 must be in \[0, 1\)"),
    ({"optim.ema_decay": -0.1}, r"optim.ema_decay=-0.1 must be in \[0, 1\)"),
    ({"best_metric": "f1"}, "best_metric='f1' is not a metric known to dcrn_jax: choose one of "
                            "loss, accuracy, "),
    ({"eval_checkpoint_step": "bestt"}, "eval_checkpoint_step='bestt' must be"),
    ({"eval_checkpoint_step": -2}, "eval_checkpoint_step=-2 must be"),
])
def test_bad_values_of_the_new_fields_are_one_line_errors(overrides, message):
  with pytest.raises(UserError, match=message):
    train.validate_config(tiny_config(**overrides))


def test_best_metric_must_be_one_this_dataset_reports():
  reported = lambda classes, views=1: evaluation.metric_names(classes, views)
  evaluation.check_best_metric("top5_accuracy", reported(10))
  with pytest.raises(UserError, match="'top5_accuracy' is not among the eval metrics of this "
                                      "dataset: choose one of loss, accuracy, macro_precision, macro_recall, "
                                      "macro_f1, weighted_f1, mean_class_accuracy$"):
    evaluation.check_best_metric("top5_accuracy", reported(3))
  with pytest.raises(UserError, match="view_accuracy"):
    evaluation.check_best_metric("view_accuracy", reported(10, 1))
  evaluation.check_best_metric("view_accuracy", reported(10, 3))
  with pytest.raises(UserError, match="'mse' is not among the eval metrics of this dataset"):
    evaluation.check_best_metric("mse", reported(10))  # Known, but not a classifier's.
  assert evaluation.metric_direction("loss") == "min"
  assert evaluation.metric_direction("accuracy") == "max"
  with pytest.raises(UserError, match="'acc' is not a metric known to dcrn_jax"):
    evaluation.metric_direction("acc")


@pytest.mark.parametrize("classes,views", [(3, 1), (10, 1), (10, 3)])
def test_every_reported_metric_has_a_direction(classes, views):
  # A metric added to evaluation without its line in METRIC_DIRECTIONS fails here.
  names = evaluation.metric_names(classes, views)
  assert "loss" in names and "num_examples" not in names
  assert set(names) <= set(evaluation.METRIC_DIRECTIONS), names
  assert set(evaluation.METRIC_DIRECTIONS.values()) == {"max", "min"}


def test_best_checkpoint_is_the_best_logged_one_and_survives_rotation(tmp_path, monkeypatch):
  scripted = iter([0.5, 0.9, 0.6, 0.7, 0.4])  # Accuracy at steps 2, 4, 6, 8, 10.
  real = train.make_evaluator

  def with_scripted_accuracy(*args, **kwargs):
    evaluate_fn = real(*args, **kwargs)

    def evaluate_split(variables):
      results, predictions = evaluate_fn(variables)
      return {**results, "accuracy": next(scripted)}, predictions
    return evaluate_split
  monkeypatch.setattr(train, "make_evaluator", with_scripted_accuracy)
  config = tiny_config(num_train_steps=10, eval_every_steps=2, checkpoint_every_steps=3,
                       max_checkpoints_to_keep=2, best_metric="accuracy")
  train.fit(config, str(tmp_path))
  monkeypatch.setattr(train, "make_evaluator", real)
  tests = records(tmp_path, "test")
  best_logged = max(tests, key=lambda r: r["accuracy"])
  assert best_logged["step"] == 4
  ckpt = checkpoint.Checkpointer(str(tmp_path), read_only=True, best_metric="accuracy")
  # The latest 2 of the saves (every 3 steps, every eval, the end) and the best one.
  assert ckpt.all_steps() == [4, 9, 10] and ckpt.best_step() == 4
  config.eval_checkpoint_step = "best"
  result = train.evaluate(config, str(tmp_path))
  assert result["step"] == 4 and result["loss"] == pytest.approx(best_logged["loss"])
  config.best_metric = ""
  config.eval_checkpoint_step = "best"
  with pytest.raises(UserError, match="ranked by best_metric, which is not set"):
    train.evaluate(config, str(tmp_path))
  config.eval_checkpoint_step, config.optim.ema_decay = "latest", 0.9
  with pytest.raises(UserError, match="step 10 .* has no averaged weights .* "
                                      "--config.optim.ema_eval=False"):
    train.evaluate(config, str(tmp_path))


def _fake_state(step: int, value: float):
  return types.SimpleNamespace(step=jnp.int32(step), params={"w": jnp.full((2,), value)},
                               batch_stats={}, opt_state={"mu": jnp.zeros((2,))}, ema_params={})


def test_a_min_metric_keeps_the_lowest_and_the_rank_survives_a_restart(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=1, best_metric="loss",
                                 best_mode=evaluation.METRIC_DIRECTIONS["loss"])
  for step, loss in [(1, 0.9), (2, 0.3), (3, 0.5), (4, 0.7)]:
    ckpt.save(_fake_state(step, loss), metrics={"loss": loss, "accuracy": 0.1})
  ckpt.save(_fake_state(5, 0.0))  # Saved without metrics: never the best.
  assert ckpt.all_steps() == [2, 5] and ckpt.best_step() == 2
  ckpt.close()
  again = checkpoint.Checkpointer(str(tmp_path), max_to_keep=1, best_metric="loss",
                                  best_mode="min")
  assert again.step_to_restore("best") == 2
  again.save(_fake_state(6, 0.2), metrics={"loss": 0.2})
  assert again.all_steps() == [6] and again.best_step() == 6
  again.close()
  without = checkpoint.Checkpointer(str(tmp_path / "none"), max_to_keep=2, best_metric="loss",
                                    best_mode="min")
  without.save(_fake_state(1, 0.0))
  with pytest.raises(UserError, match="no best checkpoint in .* available steps: \\[1\\]"):
    without.step_to_restore("best")


def test_turning_ema_on_when_resuming_starts_the_average_from_the_restored_parameters(tmp_path):
  saved = state_lib.TrainState(step=jnp.int32(3), params={"w": jnp.arange(4.0)}, batch_stats={},
                               opt_state={"mu": jnp.ones((4,))}, ema_params={}, apply_fn=None,
                               tx=None)
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  ckpt.save(saved)
  assert not ckpt.has_ema(3)
  with_ema = saved.replace(ema_params={"w": jnp.zeros((4,))})
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(
          parallel.create_mesh())), with_ema)
  restored = ckpt.restore_train_state(3, abstract)
  ckpt.close()
  assert int(restored.step) == 3
  np.testing.assert_array_equal(restored.ema_params["w"], np.arange(4.0))
  np.testing.assert_array_equal(restored.params["w"], np.arange(4.0))


def test_resuming_with_another_accumulate_steps_is_refused(tmp_path):
  workdir = str(tmp_path)
  workdir_lib.prepare(workdir, tiny_config())
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)  # As a trained run has.
  workdir_lib.prepare(workdir, tiny_config(**{"optim.ema_decay": 0.9}))  # May change.
  with pytest.raises(UserError, match=r"another config \(optim.accumulate_steps: 1 -> 2\)"):
    workdir_lib.prepare(workdir, tiny_config(**{"optim.accumulate_steps": 2}))


def _conv_and_dot_dtypes(jaxpr, found, outer=""):
  """(primitive, input dtypes, name stack) of every convolution and matmul, in sub-jaxprs too
  (scans, custom VJPs, jits), whose name stacks are relative to the equation holding them."""
  for eqn in jaxpr.eqns:
    stack = "/".join(filter(None, (outer, str(eqn.source_info.name_stack))))
    if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
      found.append((eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars), stack))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          _conv_and_dot_dtypes(sub.jaxpr, found, stack)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          _conv_and_dot_dtypes(sub, found, stack)
  return found


def _traced_train_step(name, dtype, shape):
  """The jitted train step of model `name` traced (not compiled) on abstract values, with
  accumulation, EMA and batch norm on."""
  forecast = MODELS[name].task == "forecast"  # Reads 2 frames of a 3-frame sequence, predicts 1.
  config = tiny_config(**{"model.name": name, "model.dtype": dtype,
                          "model.convlstm_features": (4, 4), "model.batch_norm": True,
                          "optim.ema_decay": 0.9, "optim.accumulate_steps": 2,
                          **({"task": "forecast", "data.num_frames": 3, "data.input_frames": 2,
                              "data.output_frames": 1} if forecast else {})})
  info = DatasetInfo(num_classes=0 if forecast else 8, input_shape=shape, num_train_examples=8,
                     num_eval_examples=8, class_names=() if forecast else tuple("abcdefgh"))
  plan = tasks.for_config(config).plan(info)
  model_shape = plan.input_shape
  model = create_model(config.model, num_classes=8, input_shape=model_shape,
                       output_frames=config.data.output_frames)
  tx, schedule = optim.create_optimizer(config.optim, 10)
  mesh = parallel.create_mesh()
  state = jax.eval_shape(lambda: state_lib.create_train_state(
      model, tx, model_shape, jax.random.key(0), mesh, ema=True)[0])
  sharding = jax.tree.map(lambda _: parallel.replicated(mesh), state)
  batch = {"inputs": jax.ShapeDtypeStruct((8,) + shape, jnp.float32)}
  if not forecast:
    batch["label"] = jax.ShapeDtypeStruct((8,), jnp.int32)
  traced = train.make_train_step(config, plan, schedule, mesh, sharding).trace(
      state, batch, jax.random.key(1))
  return state, traced


# The PredRNN family's hand-written backward (models/predrnn_scan.py) still computes a few
# dot_generals in float32 under dtype=bfloat16: a known gap, marked so that fixing it shows.
_FLOAT32_BACKWARD = pytest.mark.xfail(
    strict=True, reason="predrnn_scan's backward: some dot_generals stay float32 under bfloat16")
_BF16_CASES = [pytest.param(n, marks=_FLOAT32_BACKWARD) if n.startswith("predrnn") else n
               for n in sorted(MODELS)]


@pytest.mark.parametrize("name", _BF16_CASES)
def test_bfloat16_computes_every_layer_in_bfloat16_with_float32_state(name):
  shape = (16, 16, 1) if MODELS[name].rank == 3 else (3, 16, 16, 1)
  state, traced = _traced_train_step(name, "bfloat16", shape)
  ops = _conv_and_dot_dtypes(traced.jaxpr.jaxpr, [])
  # Forward and backward: every convolution and matmul takes bfloat16 inputs ...
  assert ops and all(d == ("bfloat16", "bfloat16") for _, d, _ in ops), \
      [op for op in ops if op[1] != ("bfloat16", "bfloat16")]
  # ... every layer with a kernel has such ops of its own in the forward pass ...
  kernels = [jax.tree_util.keystr(path, simple=True, separator="/")
             for path, _ in jax.tree_util.tree_leaves_with_path(state.params)
             if "kernel" in jax.tree_util.keystr(path[-1:], simple=True, separator="/")]
  forward = [stack.split("/") for _, _, stack in ops if stack.startswith("jvp(")]
  if all(len(stack) == 1 for stack in forward):
    # The PredRNN family applies its cells as plain functions of their parameters, so the name
    # stack stops at the model: then at least one forward bfloat16 op per kernel.
    assert len(forward) >= len(kernels), (len(forward), kernels)
  else:
    for layer in {k.rsplit("/", 1)[0] for k in kernels}:
      assert any(layer.split("/")[-1] in stack for stack in forward), (layer, forward)
  # ... while parameters, their average, optimizer state and the loss stay float32.
  new_state, metrics = traced.out_info
  for leaf in jax.tree.leaves((new_state.params, new_state.ema_params, new_state.opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf
  assert metrics["loss"].dtype == jnp.float32


def test_the_dtype_probe_sees_float32_ops_in_a_float32_step():
  _, traced = _traced_train_step("convlstm", "float32", (3, 16, 16, 1))
  ops = _conv_and_dot_dtypes(traced.jaxpr.jaxpr, [])
  assert ops and all(d == ("float32", "float32") for _, d, _ in ops)
  assert any("convlstm1" in stack.split("/") for _, _, stack in ops)
