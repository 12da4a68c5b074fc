"""train_and_evaluate(config, workdir) and evaluate(config, workdir): the loop, top to bottom.

The only place that wires the rooms together:
  config -> data (host-local numpy) -> parallel (global sharded arrays) -> steps (jit)
         -> metrics -> writers;  checkpoint saves and restores the state.
"""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp

from dcrn_jax import checkpoint, data, distributed, metrics as metrics_lib, multiclip, optim
from dcrn_jax import host, parallel
from dcrn_jax import state as state_lib, steps
from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model

_POSITIVE = ("batch_size", "eval_batch_size", "num_train_steps", "log_every_steps",
             "max_checkpoints_to_keep")
_NON_NEGATIVE = ("eval_every_steps", "checkpoint_every_steps")


def validate_config(config):
  """Value checks the locked config's types cannot express; raises UserError."""
  for name in _POSITIVE:
    if config[name] <= 0:
      raise UserError(f"{name}={config[name]} must be positive")
  for name in _NON_NEGATIVE:
    if config[name] < 0:
      raise UserError(f"{name}={config[name]} must be >= 0 (0 turns it off until the end)")
  if not 0.0 <= config.label_smoothing < 1.0:
    raise UserError(f"label_smoothing={config.label_smoothing} must be in [0, 1)")
  if config.on_nonfinite not in ("stop", "skip"):
    raise UserError(f"on_nonfinite={config.on_nonfinite!r} must be 'stop' or 'skip'")


def _config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
  diffs = []
  for key in sorted(saved.keys() | current.keys()):
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += _config_differences(a, b, f"{prefix}{key}.")
    elif a != b:
      diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return diffs


# Parts of the config a run's checkpoints depend on: changing them in the same workdir is refused.
_RUN_DEFINING = ("model", "seed")


def _prepare_workdir(workdir: str, config) -> None:
  """Creates WORKDIR and records the config; refuses a different model in a trained workdir."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  has_checkpoints = os.path.isdir(os.path.join(workdir, "checkpoints")) and any(
      name.isdigit() for name in os.listdir(os.path.join(workdir, "checkpoints")))
  if has_checkpoints and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    diffs = _config_differences({k: saved.get(k) for k in _RUN_DEFINING},
                                {k: current[k] for k in _RUN_DEFINING})
    if diffs:
      raise UserError(f"{workdir} holds checkpoints of a run with another config ("
                      + "; ".join(diffs[:5]) + "): resuming it with this one would mix two "
                      "runs. Use a new --workdir, or the config saved in " + path)
  try:
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
      tmp = path + ".tmp"  # Written whole, then renamed: a kill never leaves half a file.
      with open(tmp, "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
      os.replace(tmp, path)
  except OSError as e:
    raise UserError(f"cannot write to workdir {workdir!r} ({e.strerror}); "
                    "choose a writable --workdir") from e


def _setup(config):
  """Mesh, dataset info and model: what training and evaluation share."""
  validate_config(config)
  mesh = parallel.create_mesh()
  parallel.local_batch_size(config.batch_size, mesh, "batch_size")
  parallel.local_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  info = data.get_info(config.data)
  model = create_model(config.model, num_classes=info.num_classes,
                       input_shape=info.input_shape)
  return mesh, info, model


def _host_batches(make_batches, config, global_batch_size: int, **kwargs):
  """This process's batches: read its own share, or slice its rows from the global stream."""
  p, n = jax.process_index(), jax.process_count()
  if config.data.shard_by_process or n == 1:
    return make_batches(config.data, local_batch_size=global_batch_size // n, process_index=p,
                        process_count=n, **kwargs)
  whole = make_batches(config.data, local_batch_size=global_batch_size, process_index=0,
                       process_count=1, **kwargs)
  return parallel.own_rows(whole, p, n)


def make_evaluator(model, info, config, mesh):
  """variables -> metrics over one pass of the eval split (padded rows masked, each example
  counted once). Videos with several eval views (clips x crops) are scored per video, their
  views' softmax averaged (dcrn_jax/multiclip.py)."""
  if info.eval_views > 1:
    logits_fn = multiclip.make_logits_fn(model, mesh)

    def evaluate_views(variables):
      batches = _host_batches(data.eval_batches, config, config.eval_batch_size)
      return multiclip.evaluate_views(logits_fn, variables, batches, mesh,
                                      config.data.prefetch_batches)
    return evaluate_views

  # jit(eval_step) with explicit shardings: variables replicated, batch split on `data`.
  eval_fn = jax.jit(functools.partial(steps.eval_step, apply_fn=model.apply),
                    in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                    out_shardings=parallel.replicated(mesh),
                    compiler_options=host.compiler_options())

  def evaluate_examples(variables):
    batches = _host_batches(data.eval_batches, config, config.eval_batch_size)
    totals = None
    for batch in parallel.prefetch_to_device(batches, mesh, config.data.prefetch_batches):
      sums = eval_fn(variables, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
      raise UserError(f"the eval split {config.data.eval_split!r} of {config.data.name!r} is "
                      "empty")
    return metrics_lib.finalize_eval(totals)
  return evaluate_examples


def _check_nonfinite(fetched, config, ckpt, skipped_before: int) -> int:
  """Stops (on_nonfinite='stop') or counts the steps whose update was not applied."""
  bad = [step for step, m in fetched if m["nonfinite"] > 0]
  if bad and config.on_nonfinite == "stop":
    ckpt.wait()
    raise UserError(
        f"the loss or gradient norm became NaN/Inf at step {bad[0]}; that update was not applied "
        f"and training stopped. Last good checkpoint: step {ckpt.latest_step()}. Lower "
        "optim.learning_rate, check optim.grad_clip_norm and the data, or set "
        "--config.on_nonfinite=skip to skip such steps")
  if bad and jax.process_index() == 0:
    print(f"skipped the non-finite update of step(s) {bad} "
          f"({skipped_before + len(bad)} so far)", flush=True)
  return len(bad)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (resuming from WORKDIR/checkpoints when present) and returns the final eval metrics.

  After a SIGTERM it returns {'preempted_at_step': step} once the checkpoint there is written.
  """
  return fit(config, workdir)[1]


def fit(config, workdir: str):
  """train_and_evaluate that also returns the final TrainState: (state, metrics)."""
  validate_config(config)  # Config mistakes surface before any dataset is prepared.
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  _prepare_workdir(workdir, config)
  mesh, info, model = _setup(config)
  root_rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(root_rng)
  state, state_sharding = state_lib.create_train_state(model, tx, info.input_shape, init_rng, mesh)
  ckpt = checkpoint.Checkpointer(workdir, max_to_keep=config.max_checkpoints_to_keep,
                                 async_save=config.async_checkpointing)
  latest = ckpt.latest_step()
  if latest is not None:
    state = ckpt.restore_train_state(
        latest, state_lib.abstract_with_sharding(state, state_sharding))
  start_step = int(jax.device_get(state.step))
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  if jax.process_index() == 0:
    print(f"model {config.model.name}: {num_params:,} parameters | data {config.data.name}: "
          f"{info.num_train_examples} train / {info.num_eval_examples} eval examples of shape "
          f"{info.input_shape}, {info.num_classes} classes | {mesh.devices.size} device(s) "
          f"({jax.devices()[0].platform}), {jax.process_count()} process(es) | "
          + (f"resuming from step {start_step}" if latest is not None else "starting at step 0"),
          flush=True)

  train_fn = jax.jit(
      functools.partial(steps.train_step, schedule=schedule,
                        label_smoothing=config.label_smoothing,
                        grad_clip_norm=config.optim.grad_clip_norm),
      in_shardings=(state_sharding, parallel.batch_sharding(mesh), parallel.replicated(mesh)),
      out_shardings=(state_sharding, parallel.replicated(mesh)),
      donate_argnums=(0,), compiler_options=host.compiler_options())
  evaluate_fn = make_evaluator(model, info, config, mesh)
  if jax.process_index() == 0:
    data.write_label_map(info, workdir)
  batches = _host_batches(data.train_batches, config, config.batch_size, seed=config.seed,
                          start_step=start_step)
  batches = parallel.prefetch_to_device(batches, mesh, config.data.prefetch_batches)

  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step)
  progress = metrics_lib.Progress(start_step, config.num_train_steps, live=config.progress_bar)
  pending, to_log, eval_metrics, step, skipped = [], [], {}, start_step, 0
  preemption = distributed.PreemptionWatch()
  t_start = time.perf_counter()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      state, step_metrics = train_fn(state, next(batches), dropout_rng)
      pending.append((step, step_metrics))
      if step == start_step + 1:  # Keep compilation out of the steps/s figures.
        jax.block_until_ready(step_metrics)
        if jax.process_index() == 0:
          print(f"first step (with compilation) took "
                f"{metrics_lib.format_duration(time.perf_counter() - t_start)}", flush=True)
        progress.mark(step)
      progress.tick(step)
      last = step == config.num_train_steps
      log_now = step % config.log_every_steps == 0 or last
      save_now = (config.checkpoint_every_steps
                  and step % config.checkpoint_every_steps == 0) or last
      if log_now or save_now:
        # One sync for the whole interval; a non-finite step is caught before any later save.
        fetched, pending = jax.device_get(pending), []
        skipped += _check_nonfinite(fetched, config, ckpt, skipped)
        to_log += [m for _, m in fetched]
      if log_now:
        train_metrics = metrics_lib.mean_metrics(to_log)
        to_log = []
        train_metrics["skipped_steps"] = skipped
        train_metrics["steps_per_sec"] = progress.mark(step)
        writer.write(step, "train", train_metrics)
        progress.log(step, train_metrics)
      if save_now:
        ckpt.save(state, force=True)
      if (config.eval_every_steps and step % config.eval_every_steps == 0) or last:
        eval_metrics = evaluate_fn(state.variables)
        writer.write(step, "test", eval_metrics)
        progress.log(step, eval_metrics, split="test")
        progress.mark(step)  # Eval time is not training time.
      if not last and preemption.should_stop(step):  # The same step on every process.
        ckpt.save(state, force=True)
        ckpt.close()
        if jax.process_index() == 0:
          print(f"preempted (SIGTERM): saved a checkpoint at step {step}; run the same command "
                "to resume from it", flush=True)
        return state, {"preempted_at_step": step}
  except KeyboardInterrupt:
    ckpt.close()
    raise UserError(f"interrupted at step {step}; the latest checkpoint is step "
                    f"{ckpt.latest_step()}: run the same command to resume from it") from None
  finally:
    writer.close()
    preemption.close()
  if start_step >= config.num_train_steps:  # Already trained that far: report where it is.
    eval_metrics = evaluate_fn(state.variables)
    progress.log(start_step, eval_metrics, split="test")
  ckpt.close()
  if jax.process_index() == 0:
    print(f"done: {max(config.num_train_steps - start_step, 0)} steps in "
          f"{metrics_lib.format_duration(time.perf_counter() - t_start)}; "
          f"checkpoints in {ckpt.directory}", flush=True)
  return state, eval_metrics


def evaluate(config, workdir: str) -> dict:
  """Restores the model (no optimizer state) and evaluates the eval split; writes eval.json."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise UserError(f"no checkpoints in {ckpt_dir}: train first with --mode=train and the same "
                    "--workdir, or point --workdir at a finished run")
  mesh, info, model = _setup(config)
  abstract = jax.eval_shape(
      functools.partial(state_lib.init_variables, model, info.input_shape), jax.random.key(0))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                         sharding=parallel.replicated(mesh)),
                          abstract)
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  wanted = None if config.eval_checkpoint_step < 0 else config.eval_checkpoint_step
  step, variables = ckpt.restore_variables(wanted, abstract)
  results = make_evaluator(model, info, config, mesh)(variables)
  results["step"] = step
  if jax.process_index() == 0:
    print(f"[eval] step {step} | {metrics_lib.format_metrics(results)} | "
          f"{results['num_examples']} examples of {config.data.name}/{config.data.eval_split}",
          flush=True)
    with open(os.path.join(workdir, "eval.json"), "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    writer = metrics_lib.MetricWriter(workdir)
    writer.write(step, "eval", results)
    writer.close()
  return results
