"""train_and_evaluate(config, workdir) and evaluate(config, workdir): the loop, top to bottom.

The only place that wires the rooms together:
  config -> data (host-local numpy) -> parallel (global sharded arrays) -> steps (jit)
         -> metrics -> writers;  checkpoint saves and restores the state.

The config is read here, at the edge: the task (tasks/), the data source (data/), the model
(models/) and the optimizer (optim.py) take their own sub-config; durations and feeding get
frozen values read once from the fields they name (`_read`).
"""

import contextlib
import dataclasses
import functools
import os
import sys
import time

import jax

from dcrn_jax import checkpoint, data, distributed, durations, evaluation, feeding, host
from dcrn_jax import lock, metrics as metrics_lib, optim, parallel, profiling
from dcrn_jax import state as state_lib, steps, tasks, workdir as workdir_lib, write_failures
from dcrn_jax.errors import Interrupted, UserError
from dcrn_jax.models import create_model

_POSITIVE = ("batch_size", "eval_batch_size", "max_checkpoints_to_keep")
_NON_NEGATIVE = ("eval_every_steps", "checkpoint_every_steps")


def _read(config, cls):
  """cls (a frozen dataclass of a room: durations.Lengths, feeding.Spec) from the config's
  fields of the same names: the room gets values, not the config."""
  return cls(**{field.name: config[field.name] for field in dataclasses.fields(cls)})


def feed_spec(config) -> feeding.Spec:
  """The data fields feeding reads (checked: UserError)."""
  return _read(config.data, feeding.Spec)


def validate_config(config):
  """Value checks the locked config's types cannot express (UserError); returns the run's task
  (tasks.for_config: config.task's own fields checked and read)."""
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
  task = tasks.for_config(config)
  durations.validate(_read(config, durations.Lengths))
  feed_spec(config)  # Checks data.on_device and data.on_device_max_bytes.
  optim.validate(config.optim)
  evaluation.check_best_metric(config.best_metric)
  which = config.eval_checkpoint_step
  if not (which in ("latest", "best") or (isinstance(which, int) and which >= -1)):
    raise UserError(f"eval_checkpoint_step={which!r} must be 'latest' (or -1), 'best' or a "
                    "step number")
  return task


def resolve_config(config, info, plan):
  """The config with every duration in steps (durations.py), checked against the dataset and
  the metrics the task's evaluation reports (plan: tasks.Plan), and the lines to print."""
  examples = durations.examples_per_epoch(info.num_train_examples, jax.process_count(),
                                          config.data.shard_by_process)
  lengths, notes = durations.resolve(_read(config, durations.Lengths), examples,
                                     config.batch_size, config.optim.accumulate_steps)
  config = config.copy_and_resolve_references()  # The input stays as it is.
  config.unlock()
  config.update(dataclasses.asdict(lengths))
  config.lock()
  evaluation.check_best_metric(config.best_metric, plan.metric_names)
  return config, notes + optim.schedule_notes(config.optim, config.num_train_steps)


def _best_mode(config) -> str:
  return tasks.metric_direction(config.best_metric) if config.best_metric else "max"


def _setup(config, task=None):
  """Mesh, dataset info, the task's plan (tasks.Plan) and model: what training and evaluation
  share. task: the run's (validate_config's); None: built from the (validated) config."""
  mesh = parallel.create_mesh()
  parallel.local_batch_size(config.batch_size, mesh, "batch_size")
  parallel.local_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  info = data.get_info(config.data)
  plan = (task or tasks.for_config(config)).plan(info)  # Checks the dataset too.
  model = create_model(config.model, num_classes=info.num_classes, input_shape=plan.input_shape,
                       output_frames=config.data.output_frames)
  return mesh, info, plan, model


def _host_batches(make_batches, shard_by_process: bool, global_batch_size: int, **kwargs):
  """This process's batches: read its own share, or slice its rows from the global stream
  (data.shard_by_process). make_batches: data's train_batches, eval_batches (their data config
  bound), train_indices or eval_indices."""
  p, n = jax.process_index(), jax.process_count()
  if shard_by_process or n == 1:
    return make_batches(local_batch_size=global_batch_size // n, process_index=p,
                        process_count=n, **kwargs)
  whole = make_batches(local_batch_size=global_batch_size, process_index=0, process_count=1,
                       **kwargs)
  return parallel.own_rows(whole, p, n)


def resident_splits(config, info, mesh, splits=("train", "eval")) -> dict[str, bool]:
  """{'train': resident?, 'eval': resident?}: which of `splits` live on the device
  (feeding.plan, from the source's answer, data.resident_reason); the others stream."""
  spec = feed_spec(config)
  reasons = {}
  if spec.mode is not False:  # Streaming asks the source nothing.
    reasons = {split: data.resident_reason(config.data, train=split == "train")
               for split in splits}
  return feeding.plan(spec, info, mesh, reasons)


def device_feed(config, info, mesh, *, train: bool) -> feeding.Feed:
  """The train or eval split resident on the device: this process's rows read from the source
  (data.split_pixels), placed on its devices (feeding.resident_feed); the train split with its
  augmentation."""
  rows = info.num_train_examples if train else info.num_eval_examples
  start, stop = feeding.local_rows(rows, mesh)
  pixels = data.split_pixels(config.data, train=train, start=start, stop=stop)
  return feeding.resident_feed(pixels, start=start, num_rows=rows, mesh=mesh,
                               labels=info.num_classes > 0,
                               augment=feeding.augment_fn(feed_spec(config)) if train else None)


def make_evaluator(model, info, config, mesh, plan, on_device: bool | None = None):
  """variables -> (metrics, predictions) over one pass of the eval split, by the task's
  evaluator (plan.evaluator, tasks.Plan): classification's (dcrn_jax/evaluation.py: padded rows
  masked, each example counted once, a video's views averaged), or forecasting's
  (tasks/forecast_evaluation.py; its `predictions` are the first forecast.num_shown test
  sequences, for pictures).

  on_device: whether the eval split lives on the device (None: as data.on_device decides,
  `resident_splits`); its batches are then row indices, gathered inside the jitted step.
  """
  if on_device is None:
    on_device = resident_splits(config, info, mesh, splits=("eval",))["eval"]
  feed = device_feed(config, info, mesh, train=False) if on_device else None
  scale = feed_spec(config).scale

  def fed(fn, quiet=False):
    return feeding.fed_eval(fn, mesh, scale, feed, quiet=quiet)
  run = plan.evaluator(model, mesh, fed)

  def evaluate_split(variables):
    if feed is not None:
      batches = _host_batches(data.eval_indices, config.data.shard_by_process,
                              config.eval_batch_size, num_examples=info.num_eval_examples)
    else:
      batches = _host_batches(functools.partial(data.eval_batches, config.data),
                              config.data.shard_by_process, config.eval_batch_size, scaled=False)
    try:
      return run(variables, batches, mesh, config.data.prefetch_batches)
    except UserError as e:
      raise UserError(f"{e} ({config.data.name!r}, split {config.data.eval_split!r})") from None
  return evaluate_split


def make_train_step(config, plan, schedule, mesh, state_sharding, feed=None):
  """The jitted train step on one (micro-)batch: (state, batch, rng) -> (state, metrics): the
  task's (plan.train_step, tasks.Plan) under the learning-rate `schedule`.

  The batch is the loop's: uint8 pixels, scaled inside the step, or with `feed` (a
  device_data.Feed: the train split resident on the device) the rows' indices, gathered there.
  """
  gather, augment, resident = (feed.gather, feed.augment, feed.arrays) if feed else (None,
                                                                                      None, {})
  mean, std = feed_spec(config).scale
  fn = steps.fed(functools.partial(plan.train_step, schedule=schedule), mean=mean, std=std,
                 gather=gather, augment=augment)
  jitted = jax.jit(
      fn, in_shardings=(state_sharding, parallel.batch_sharding(mesh), parallel.replicated(mesh),
                        parallel.batch_sharding(mesh)),
      out_shardings=(state_sharding, parallel.replicated(mesh)),
      donate_argnums=(0,), compiler_options=host.compiler_options())
  return steps.Bound(jitted, resident)


def _evaluate_state(evaluate_fn, state, ema_eval: bool) -> tuple[dict, str]:
  """({split: (metrics, predictions)}, the split that counts): the trained weights under 'test'
  and, with EMA on (the state keeps an average), the averaged ones under 'test_ema'; the latter
  counts (returned, ranks checkpoints) when ema_eval (optim.ema_eval): optim.evaluates_ema."""
  results = {"test": evaluate_fn(state.variables)}
  if state.ema_params:
    results["test_ema"] = evaluate_fn(state.ema_variables)
  return results, "test_ema" if state.ema_params and ema_eval else "test"


def write_eval_results(workdir: str, step: int, results: dict, predictions, weights: str,
                       plan) -> str | None:
  """Process 0 writes the task's per-example file (plan.write_predictions, tasks.Plan;
  classification: eval_predictions.jsonl, every process's examples, gathered by the evaluation;
  forecasting: none, its `predictions` are sequences for pictures) and then eval.json, each
  whole; returns the per-example file's path (None when the task writes none, and on the other
  processes).

  weights: which weights were scored, "trained" or "ema" (recorded in eval.json).
  """
  path = None
  if jax.process_index() == 0:
    path = plan.write_predictions(workdir, predictions)
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.EVAL_FILE),
                           dict(results, step=int(step), weights=weights), indent=2,
                           sort_keys=True)
  return path


def _weights_name(split: str) -> str:
  return "ema" if split == "test_ema" else "trained"


def is_due(step: int, every: int, last_step: int) -> bool:
  """Whether a periodic action (log, checkpoint, eval) runs after `step`: every `every` steps
  (0: never) and always after the last step."""
  return step == last_step or (every > 0 and step % every == 0)


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


def train_and_evaluate(config, workdir: str, *, profile_steps: int = 0) -> dict:
  """Trains (resuming from WORKDIR/checkpoints when present) and returns the final eval metrics
  (of the averaged weights when optim.ema_eval and EMA is on).

  profile_steps: trace that many steps after the first into WORKDIR/profile (profiling.py).
  After a SIGTERM it returns {'preempted_at_step': step} once the checkpoint there is written.
  Process 0 holds WORKDIR/train.lock meanwhile (lock.py): a second run on WORKDIR is refused.
  """
  if jax.process_index() != 0:
    return fit(config, workdir, profile_steps=profile_steps)[1]
  with _write_failures_said(workdir), lock.hold(workdir):
    return fit(config, workdir, profile_steps=profile_steps)[1]


@contextlib.contextmanager
def _write_failures_said(workdir: str):
  """A WriteFailed inside says where the same command resumes; a failed save's partial folder
  is removed."""
  try:
    yield
  except write_failures.WriteFailed as e:
    if e.what is None:  # The workdir itself could not be created: nothing is in it.
      raise e.with_then("choose another --workdir, or fix that and run the same command") from e
    checkpoint.discard_partial(workdir)
    raise e.with_then(write_failures.resume_note(checkpoint.complete_steps(workdir))) from e


def fit(config, workdir: str, *, profile_steps: int = 0):
  """train_and_evaluate that also returns the final TrainState: (state, metrics).

  A write into WORKDIR that fails (a full disk, a read-only or vanished workdir) stops it with
  one line saying what could not be written and the step the same command resumes from; the
  partial folder of a failed save is removed.
  """
  with _write_failures_said(workdir):
    return _fit(config, workdir, profile_steps=profile_steps)


def _fit(config, workdir: str, *, profile_steps: int = 0):
  task = validate_config(config)  # Config mistakes surface before any dataset is prepared.
  trace = profiling.StepTrace(workdir, profile_steps)
  workdir_lib.prepare(workdir, config)
  mesh, info, plan, model = _setup(config, task)  # plan: what the task answers (tasks.Plan).
  config, notes = resolve_config(config, info, plan)  # From here on durations are in steps.
  if jax.process_index() == 0:
    for note in notes:
      print(f"note: {note}", flush=True)
  resident = resident_splits(config, info, mesh)  # Which splits live on the device.
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps)
  root_rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(root_rng)
  state, state_sharding = state_lib.create_train_state(
      model, tx, plan.input_shape, init_rng, mesh,
      ema=config.optim.ema_decay > 0)
  if jax.process_index() == 0:
    for path in checkpoint.discard_partial(workdir):
      print(f"note: removed {path}, the partial checkpoint of a save that did not complete",
            flush=True)
  ckpt = checkpoint.Checkpointer(
      workdir, max_to_keep=config.max_checkpoints_to_keep, async_save=config.async_checkpointing,
      best_metric=config.best_metric,
      best_mode=_best_mode(config))
  latest = ckpt.latest_step()
  if latest is not None:
    state = ckpt.restore_train_state(
        latest, state_lib.abstract_with_sharding(state, state_sharding))
  start_step = int(jax.device_get(state.step))
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  if jax.process_index() == 0:
    print(f"model {config.model.name}: {num_params:,} parameters | data {config.data.name}: "
          f"{info.num_train_examples} train / {info.num_eval_examples} eval "
          f"{plan.data_words} | {mesh.devices.size} device(s) "
          f"({jax.devices()[0].platform}), {jax.process_count()} process(es) | "
          + (f"resuming from step {start_step}" if latest is not None else "starting at step 0"),
          flush=True)

  feed = device_feed(config, info, mesh, train=True) if resident["train"] else None
  train_fn = make_train_step(config, plan, schedule, mesh, state_sharding, feed)
  evaluate_fn = make_evaluator(model, info, config, mesh, plan, on_device=resident["eval"])
  if jax.process_index() == 0:  # What predict and export read.
    with write_failures.into(workdir, "the run's files (label_map.json, input.json)"):
      plan.write_run_files(workdir)
  micro_batches = config.optim.accumulate_steps  # Per update (step); 1 without accumulation.
  if feed is not None:  # Only the rows' indices travel; the step gathers them.
    batches = _host_batches(functools.partial(data.train_indices, config.data),
                            config.data.shard_by_process, config.batch_size, seed=config.seed,
                            start_step=start_step * micro_batches)
  else:
    batches = _host_batches(functools.partial(data.train_batches, config.data),
                            config.data.shard_by_process, config.batch_size, seed=config.seed,
                            start_step=start_step * micro_batches, scaled=False)
  batches = parallel.prefetch_to_device(batches, mesh, config.data.prefetch_batches)
  epoch_examples = durations.examples_per_epoch(info.num_train_examples, jax.process_count(),
                                                config.data.shard_by_process)

  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step, splits=("train",))
  progress = metrics_lib.Progress(start_step, config.num_train_steps, live=config.progress_bar)
  pending, to_log, eval_metrics, step, skipped = [], [], {}, start_step, 0
  stop = distributed.StopWatch()  # SIGTERM (preemption) and Ctrl-C: save, then stop.
  t_start = time.perf_counter()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      micro_metrics = []
      for _ in range(micro_batches):  # optax.MultiSteps updates on the last of them.
        state, step_metrics = train_fn(state, next(batches), dropout_rng)
        micro_metrics.append(step_metrics)
      pending.append((step, micro_metrics))
      if step == start_step + 1:  # Keep compilation out of the steps/s figures.
        jax.block_until_ready(step_metrics)
        if jax.process_index() == 0:
          print(f"first step (with compilation) took "
                f"{metrics_lib.format_duration(time.perf_counter() - t_start)}", flush=True)
        progress.mark(step)
        trace.start(step)
      else:
        trace.step_done(step, state)
      progress.tick(step)
      last = step == config.num_train_steps
      log_now = is_due(step, config.log_every_steps, config.num_train_steps)
      eval_now = is_due(step, config.eval_every_steps, config.num_train_steps)
      # With best_metric every evaluated step is saved, ranked by its metrics.
      save_now = (is_due(step, config.checkpoint_every_steps, config.num_train_steps)
                  or (eval_now and bool(config.best_metric)))
      if log_now or save_now:
        # One sync for the whole interval; a non-finite step is caught before any later save.
        fetched = [(s, metrics_lib.merge_micro_steps(m)) for s, m in jax.device_get(pending)]
        pending = []
        skipped += _check_nonfinite(fetched, config, ckpt, skipped)
        to_log += [m for _, m in fetched]
      if log_now:
        train_metrics = metrics_lib.mean_metrics(to_log)
        to_log = []
        train_metrics["skipped_steps"] = skipped
        train_metrics["steps_per_sec"] = progress.mark(step)
        train_metrics["epoch"] = durations.epoch_of(step, config.batch_size * micro_batches,
                                                     epoch_examples)
        if micro_batches > 1:
          train_metrics["micro_step"] = step * micro_batches
        writer.write(step, "train", train_metrics)
        progress.log(step, train_metrics)
      if eval_now:  # Before the save, whose rank it gives.
        results, counted = _evaluate_state(evaluate_fn, state, config.optim.ema_eval)
        for split, (split_metrics, _) in results.items():
          writer.write(step, split, split_metrics)
          progress.log(step, split_metrics, split=split)
        eval_metrics, predictions = results[counted]
        if last:  # The final eval is kept whole: eval.json and the per-example predictions.
          write_eval_results(workdir, step, eval_metrics, predictions, _weights_name(counted),
                             plan)
        progress.mark(step)  # Eval time is not training time.
      if save_now:
        ckpt.save(state, force=True, metrics=eval_metrics if eval_now else None)
      reason = None if last else stop.should_stop(step)  # The same step on every process.
      if reason:
        ckpt.save(state, force=True)
        ckpt.close()
        if reason == "interrupted":
          raise Interrupted(f"interrupted (Ctrl-C): saved a checkpoint at step {step}; run the "
                            "same command to resume from it")
        if jax.process_index() == 0:
          print(f"preempted (SIGTERM): saved a checkpoint at step {step}; run the same command "
                "to resume from it", flush=True)
        return state, {"preempted_at_step": step}
  except KeyboardInterrupt:  # A second Ctrl-C (or one before the watch): nothing more written.
    ckpt.discard_partial()
    raise Interrupted(f"aborted at step {step}; nothing was saved after the latest checkpoint, "
                      f"step {ckpt.latest_step()}: run the same command to resume from it"
                      ) from None
  finally:
    failing = sys.exc_info()[0] is not None
    if failing:
      ckpt.release()  # An asynchronous save in flight held back stderr: the error needs it.
    batches.close()
    trace.close(step, state)
    stop.close()
    # After a failure the closing writes may fail too: the first failure is the one reported.
    with contextlib.suppress(write_failures.WriteFailed) if failing else contextlib.nullcontext():
      writer.close()
      if jax.process_index() == 0 and step > start_step:
        workdir_lib.record_session(workdir, {
            "start_step": start_step, "end_step": step,
            "seconds": round(time.perf_counter() - t_start, 1),
            "devices": int(mesh.devices.size), "platform": jax.devices()[0].platform,
            "processes": jax.process_count(), "num_params": int(num_params)})
  if start_step >= config.num_train_steps:  # Already trained that far: report where it is.
    results, counted = _evaluate_state(evaluate_fn, state, config.optim.ema_eval)
    for split, (split_metrics, _) in results.items():
      progress.log(start_step, split_metrics, split=split)
    eval_metrics, predictions = results[counted]
    write_eval_results(workdir, start_step, eval_metrics, predictions, _weights_name(counted),
                       plan)
  ckpt.close()
  if jax.process_index() == 0:
    print(f"done: {max(config.num_train_steps - start_step, 0)} steps in "
          f"{metrics_lib.format_duration(time.perf_counter() - t_start)}; "
          f"checkpoints in {ckpt.directory}", flush=True)
  return state, eval_metrics


def restore(config, workdir: str, step=None, *, ema: bool | None = None):
  """The model of a trained workdir, for evaluation and tools that read it (no optimizer state).

  step: "latest", "best" (by config.best_metric), -1 or a step number; None:
  config.eval_checkpoint_step. ema: the averaged weights; None: when optim.ema_eval and EMA is on.
  Returns (mesh, info, plan, model, step, variables); plan: the task's (tasks.Plan).
  """
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise UserError(f"no checkpoints in {ckpt_dir}: train first with --mode=train and the same "
                    "--workdir, or point --workdir at a finished run")
  mesh, info, plan, model = _setup(config)
  abstract = state_lib.abstract_variables(model, plan.input_shape, parallel.replicated(mesh))
  ckpt = checkpoint.Checkpointer(
      workdir, read_only=True, best_metric=config.best_metric,
      best_mode=_best_mode(config))
  ema = optim.evaluates_ema(config.optim) if ema is None else ema
  step, variables = ckpt.restore_variables(
      config.eval_checkpoint_step if step is None else step, abstract, ema=ema)
  return mesh, info, plan, model, step, variables


def evaluate(config, workdir: str) -> dict:
  """Restores the model (no optimizer state) and evaluates the eval split; writes eval.json
  and eval_predictions.jsonl.

  The checkpoint is config.eval_checkpoint_step's: the latest, the best by best_metric, or a
  step; the weights are the averaged ones when optim.ema_eval and EMA is on.
  """
  validate_config(config)
  try:
    return _evaluate(config, workdir)
  except write_failures.WriteFailed as e:
    raise e.with_then("the checkpoints are untouched: run the same command again once that is "
                      "fixed") from e


def _evaluate(config, workdir: str) -> dict:
  use_ema = optim.evaluates_ema(config.optim)
  mesh, info, plan, model, step, variables = restore(config, workdir, ema=use_ema)
  results, predictions = make_evaluator(model, info, config, mesh, plan)(variables)
  results["step"] = step
  results["weights"] = "ema" if use_ema else "trained"
  path = write_eval_results(workdir, step, results, predictions, results["weights"], plan)
  if jax.process_index() == 0:
    with write_failures.into(workdir, "the eval pictures"):
      pictures = plan.write_pictures(workdir, results, predictions)
    for picture in pictures:
      print(f"wrote {picture}", flush=True)
  if jax.process_index() == 0:
    which = (f" (best by {config.best_metric})" if config.eval_checkpoint_step == "best" else "")
    print(f"[eval] step {step}{which}{' | EMA weights' if use_ema else ''} | "
          f"{metrics_lib.format_metrics(results)} | "
          f"{results['num_examples']} examples of {config.data.name}/{config.data.eval_split}",
          flush=True)
    if path:
      print(metrics_lib.format_per_class(results), flush=True)
      print(f"predictions: {path}", flush=True)
    writer = metrics_lib.MetricWriter(workdir)
    writer.write(step, "eval", results)
    writer.close()
  return results
