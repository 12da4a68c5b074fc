"""Use a trained model: a workdir -> class probabilities for video and image files, or arrays.

    python -m dcrn_jax.predict --workdir=DIR PATH... [--step=N] [--output=FILE.jsonl]

    from dcrn_jax import Predictor
    p = Predictor.from_workdir("runs/video_gru")          # latest checkpoint; step=N for another
    p.predict(["clip.mp4", "more_clips/"])[0].top_k(3)    # [(class name, probability), ...]

PATH: video or image files, or folders of them (searched recursively). The command line, its
flags and output are in predict_cli.py (started by predict/__main__.py).

Everything a prediction goes through is evaluation's: files become the rows evaluation would
score (dcrn_jax/data/files.py: a video's num_test_clips x num_test_crops views, an image resized
and cropped), as uint8 pixels; the rows run through evaluation's jitted step with evaluation's
front (`feeding.fed_eval` around `evaluation.make_log_probs_fn`: the pixels scaled and
normalised inside the jit by dcrn_jax/input_scaling.py, the one function of train, eval and
predict; batches split over every local device, padded to one shape so the step compiles once),
and a file's views are averaged by evaluation's rule (`evaluation.average_views`). Arrays of
model inputs (float) skip the front. Only the model's variables are restored, never optimizer
state.

A forecasting run (task='forecast') is served by predict_forecast.py: `Predictor.from_workdir`
gives its `ForecastPredictor` (predicted frames from clip files or arrays), and the command
line predict_forecast_cli.py.
"""

from collections.abc import Iterable, Iterator
import collections
import concurrent.futures
import dataclasses
import os

import jax
import numpy as np

from dcrn_jax import checkpoint, evaluation, feeding, input_scaling, optim, parallel
from dcrn_jax import state as state_lib
from dcrn_jax import tasks, workdir as workdir_lib
from dcrn_jax.data import files as data_files
from dcrn_jax.errors import UserError
from dcrn_jax.models import create_model
from dcrn_jax.models.classifiers import model_task


def checkpoint_step(step) -> int | str | None:
  """The checkpoint step a `step` argument or --step flag names; None means the latest.

  Accepts None, 'latest', an int or its digits, and 'best' (the best by the run's best_metric).
  """
  if step is None or step == "latest":
    return None
  if step == "best":
    return "best"
  if isinstance(step, str) and step.strip().isdigit():
    step = int(step)
  if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
    raise UserError(f"--step={step!r}: give 'latest', 'best' or a checkpoint's step number")
  return int(step)


@dataclasses.dataclass(frozen=True)
class FilePrediction:
  """What the model says about one file.

  Attributes:
    path: the file.
    probabilities: float64 (classes,), the mean of its views' class probabilities; None when
      the file was skipped.
    class_names: names by class index.
    views: model inputs averaged (a video's clips x crops; 1 for an image).
    note: what the reader should know (a video shorter than a clip), else ''.
    error: why the file was skipped (unreadable, or of a kind the model does not take), else ''.
  """

  path: str
  probabilities: np.ndarray | None
  class_names: tuple[str, ...] = dataclasses.field(repr=False)
  views: int = 0
  note: str = ""
  error: str = ""

  @property
  def label(self) -> str | None:
    """The most probable class name (None when skipped)."""
    return None if self.error else self.class_names[int(np.argmax(self.probabilities))]

  def top_k(self, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable (class name, probability), most probable first; ties by index."""
    if self.error:
      return []
    order = np.argsort(-self.probabilities, kind="stable")[:k]
    return [(self.class_names[i], float(self.probabilities[i])) for i in order]


@dataclasses.dataclass(frozen=True)
class ArrayPredictions:
  """Predictions for N examples given as arrays.

  Attributes:
    labels: the most probable class name of each example (N,).
    probabilities: float64 (N, classes), each example's views averaged.
  """

  labels: tuple[str, ...]
  probabilities: np.ndarray


def _input_shape_from_dataset(config) -> tuple[int, ...]:
  """For runs that predate WORKDIR/input.json: the shape, from the dataset (as training had it)."""
  from dcrn_jax import data  # pylint: disable=g-import-not-at-top
  try:
    info = data.get_info(config.data)
  except UserError as e:
    raise UserError(f"this run predates {workdir_lib.INPUT_FILE}, so the model's input shape "
                    f"must come from its dataset, which failed: {e}") from None
  return tasks.for_config(config).plan(info).input_shape  # As training had it.


def read_run_config(workdir: str):
  """The locked config of a training run's workdir (UserError when there is none)."""
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir {workdir} does not exist; point it at a training run's "
                    "workdir")
  return workdir_lib.read_config(workdir)


def run_task(config) -> str:
  """The run's config.task ('classify' for runs that predate tasks)."""
  return config["task"] if "task" in config else "classify"


def restore_model(workdir: str, config, step=None, *, num_classes: int = 0):
  """(model, input_shape, step, variables) of a checkpoint of the run in `workdir`: the model
  its config builds, and the weights evaluation scores (the moving average when the run kept
  one and optim.ema_eval). Only the model's variables are read, never optimizer state.

  step: as `checkpoint_step` takes it. num_classes: a classifier's classes (0 for forecasters,
  which predict data.output_frames frames).
  """
  wanted = checkpoint_step(step)
  if model_task(config.model.name) != run_task(config):
    raise UserError(f"{workdir}/config.json names model.name={config.model.name!r}, a model "
                    f"for task={model_task(config.model.name)!r}, but task={run_task(config)!r}"
                    ": the config was changed after training; restore it")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise UserError(f"no checkpoints in {ckpt_dir}: train first with --mode=train and the "
                    "same --workdir, or point --workdir at a finished run")
  input_shape = workdir_lib.read_input_shape(workdir) or _input_shape_from_dataset(config)
  model = create_model(config.model, num_classes=num_classes, input_shape=input_shape,
                       output_frames=config.data.output_frames)  # As train.py builds it.
  abstract = state_lib.abstract_variables(model, input_shape,
                                          parallel.replicated(parallel.create_mesh()))
  best_metric = config.get("best_metric", "")
  if wanted == "best" and not best_metric:
    raise UserError("--step=best: this run ranked no checkpoints (it was trained without "
                    "best_metric); use --step=latest or a step number")
  ckpt = checkpoint.Checkpointer(
      workdir, read_only=True, best_metric=best_metric,
      best_mode=evaluation.metric_direction(best_metric) if best_metric else "max")
  # The weights evaluation scores: the moving average when the run kept one and ema_eval.
  use_ema = "ema_decay" in config.optim and optim.evaluates_ema(config.optim)
  step, variables = ckpt.restore_variables(wanted, abstract, ema=use_ema)
  return model, tuple(input_shape), step, variables


def rows_per_step(batch_size, config, mesh) -> int:
  """The rows a predictor scores per step: batch_size (else config.eval_batch_size) rounded up
  so every device takes an equal share; not positive is an error."""
  rows = int(batch_size or config.eval_batch_size)
  if rows < 1:
    raise UserError(f"batch_size={rows} must be positive")
  devices = mesh.devices.size
  return -(-rows // devices) * devices


class Predictor:
  """A trained model ready to predict, its variables on the devices.

  Public attributes: model (the flax Module), variables ({'params', 'batch_stats'}), config
  (the run's locked config), class_names, step (of the checkpoint), input_shape (one model
  input, no batch), batch_size (rows per step), mesh.
  """

  def __init__(self, model, variables: dict, config, class_names, *, input_shape,
               step: int | None = None, batch_size: int | None = None):
    self.model, self.config, self.step = model, config, step
    self.class_names = tuple(class_names)
    self.input_shape = tuple(int(n) for n in input_shape)
    self.mesh = parallel.create_mesh()
    self.variables = jax.device_put(variables, parallel.replicated(self.mesh))
    self.batch_size = rows_per_step(batch_size, config, self.mesh)
    # Model inputs (float) go straight in; pixels (uint8) through evaluation's front, which
    # scales them inside the jit as the train and eval steps do.
    self._log_probs_fn = evaluation.make_log_probs_fn(model, self.mesh)
    self._pixels_fn = feeding.fed_eval(self._log_probs_fn, self.mesh,
                                         feeding.scaling(config.data), quiet=True)
    self._file_spec = None

  @classmethod
  def from_workdir(cls, workdir: str, step=None, *, batch_size: int | None = None):
    """Restores a run: its config.json, label_map.json and a checkpoint's model variables.

    A forecasting run (task='forecast') gives a `predict_forecast.ForecastPredictor` instead,
    whose `predict_arrays` and `predict` return predicted frames.

    Args:
      workdir: the --workdir of a training run.
      step: None or 'latest' (the latest checkpoint), 'best' (by the run's best_metric), or a
        step number; the weights are the moving average when the run kept one (optim.ema_eval).
      batch_size: rows (model inputs) per step; default the run's eval_batch_size.
    """
    config = read_run_config(workdir)
    name = run_task(config)
    task = tasks.get(name) if name in tasks.NAMES else None
    if task is None or not task.serves_predict:
      raise UserError(f"{workdir} holds a run of task={name!r}: predict and export serve "
                      "classifiers (task='classify') and forecasters (task='forecast') only")
    if not issubclass(cls, task.predictor()):  # Another task's predictor serves the run.
      return task.predictor().from_workdir(workdir, step, batch_size=batch_size)
    class_names = workdir_lib.read_class_names(workdir)
    model, input_shape, step, variables = restore_model(workdir, config, step,
                                                        num_classes=len(class_names))
    return cls(model, variables, config, class_names, input_shape=input_shape, step=step,
               batch_size=batch_size)

  @property
  def file_spec(self) -> data_files.FileSpec:
    """How files become this model's inputs (UserError for a model no file can feed)."""
    if self._file_spec is None:
      self._file_spec = data_files.file_spec(self.config.data, self.input_shape)
    return self._file_spec

  @property
  def views(self) -> int:
    """Model inputs per file: a video's eval views, 1 for an image."""
    return self.file_spec.views

  def pixels(self, path: str) -> np.ndarray:
    """uint8 (views, *input_shape): the rows evaluation would score for one file, unscaled."""
    try:
      return data_files.read(path, self.file_spec)[0]
    except data_files.Unreadable as e:
      raise UserError(f"{path}: {e}") from None

  def preprocess(self, path: str) -> np.ndarray:
    """float32 (views, *input_shape): the model inputs of one file, as evaluation makes them
    (`pixels`, scaled and normalised by `input_scaling.model_input`)."""
    return np.asarray(input_scaling.model_input(self.pixels(path),
                                                *feeding.scaling(self.config.data)))

  def stream(self, *, window: str = "grow", states: int = 2):
    """A `stream.FrameStream`: push decoded frames one at a time, class probabilities after
    each (recurrent clip models only; `window` and `states` as dcrn_jax/stream.py says)."""
    from dcrn_jax import stream as stream_lib  # pylint: disable=g-import-not-at-top
    spec = self.file_spec
    if spec.clip is None:
      raise UserError(f"this model ({self.config.model.name}) takes single images of shape "
                      f"{self.input_shape} and has no recurrence over frames: it cannot run one "
                      "frame at a time")
    pre = stream_lib.FramePreprocessor(size=spec.clip.size, resize_short=spec.clip.resize_short,
                                       channels=self.input_shape[-1],
                                       data_config=self.config.data)
    return stream_lib.FrameStream(self.model, self.variables, preprocessor=pre,
                                  class_names=self.class_names,
                                  clip_frames=self.input_shape[0], window=window, states=states)

  # ------------------------------------------------------------------ rows -> log-probabilities

  def _batches(self, pieces: Iterable[tuple[np.ndarray, np.ndarray]]):
    """(rows (r, *input_shape), ids (r,)) pieces -> (log_probs (b, C), ids (b,)) of the real
    rows of each batch of batch_size rows (the last one padded and masked). Rows are uint8
    pixels or float32 model inputs, one kind per call."""
    buffer, ids, held = [], [], 0
    for rows, row_ids in pieces:
      buffer.append(rows)
      ids.append(row_ids)
      held += len(rows)
      while held >= self.batch_size:
        rows_all, ids_all = np.concatenate(buffer), np.concatenate(ids)
        yield self._run(rows_all[:self.batch_size], ids_all[:self.batch_size])
        buffer, ids = [rows_all[self.batch_size:]], [ids_all[self.batch_size:]]
        held -= self.batch_size
    if held:
      yield self._run(np.concatenate(buffer), np.concatenate(ids))

  def _run(self, rows: np.ndarray, ids: np.ndarray):
    n, size = len(rows), self.batch_size
    pixels = np.issubdtype(rows.dtype, np.integer)
    batch = {"inputs": np.zeros((size, *self.input_shape), rows.dtype if pixels else np.float32),
             "label": np.zeros(size, np.int32), "mask": np.zeros(size, np.float32),
             "example_id": np.full(size, -1, np.int32)}
    batch["inputs"][:n], batch["mask"][:n], batch["example_id"][:n] = rows, 1.0, ids
    fn = self._pixels_fn if pixels else self._log_probs_fn
    out = fn(self.variables, parallel.to_global(batch, self.mesh))
    return np.asarray(jax.device_get(out["log_probs"]))[:n], ids

  # ------------------------------------------------------------------ arrays

  def predict_arrays(self, x) -> ArrayPredictions:
    """Class probabilities of arrays: model inputs, or pixels scaled as evaluation scales them.

    Args:
      x: (N, *input_shape), one view per example, or (N, V, *input_shape), V views per example,
        averaged as evaluation averages them; float: model inputs, as they are (e.g.
        `preprocess` of N files); uint8: pixels (e.g. `pixels` of N files), scaled and
        normalised inside the jitted step (`input_scaling.model_input`).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
      x = x.astype(np.float32)
    rank = len(self.input_shape)
    if x.ndim == rank + 1 and x.shape[1:] == self.input_shape:
      x = x[:, None]
    if x.ndim != rank + 2 or x.shape[2:] != self.input_shape or not len(x):
      raise UserError(f"inputs of shape {x.shape}: this model takes (N, *{self.input_shape}) "
                      f"or (N, views, *{self.input_shape}) arrays")
    n, views = x.shape[:2]
    rows = x.reshape(n * views, *self.input_shape)
    ids = np.repeat(np.arange(n, dtype=np.int32), views)
    pieces = ((rows[i:i + self.batch_size], ids[i:i + self.batch_size])
              for i in range(0, len(rows), self.batch_size))
    log_probs, row_ids = zip(*self._batches(pieces))
    _, probabilities, _ = evaluation.average_views(np.concatenate(log_probs),
                                                   np.concatenate(row_ids))
    return ArrayPredictions(tuple(self.class_names[i] for i in probabilities.argmax(1)),
                            probabilities)

  # ------------------------------------------------------------------ files

  def predict(self, paths, *, threads: int = 0) -> list[FilePrediction]:
    """Predictions for video/image files and the files in folders (recursively), in order.

    A file that cannot be used is not an error: its FilePrediction has `error` set. See
    `iter_predict` for the arguments.
    """
    return list(self.iter_predict(paths, threads=threads))

  def iter_predict(self, paths, *, threads: int = 0) -> Iterator[FilePrediction]:
    """Yields one FilePrediction per file, in order, as soon as its views are scored.

    Args:
      paths: a path or a list of paths: files, or folders searched recursively for video and
        image files (data/files.py lists the extensions).
      threads: files decoded at once (0: twice the CPU count, at most 16).
    """
    files = data_files.list_inputs([paths] if isinstance(paths, (str, os.PathLike)) else paths)
    return self.iter_files(files, threads=threads)

  def iter_files(self, files: list[str], *, threads: int = 0) -> Iterator[FilePrediction]:
    """iter_predict for a list of files (no folder search)."""
    queue = collections.deque()  # _Pending files, in order: each waits for its rows' results.
    by_index = {}

    def pieces():
      for index, path, outcome in self._read_ahead(files, threads):
        entry = _Pending(index, path)
        queue.append(entry)
        if isinstance(outcome, str):
          entry.error = outcome
          continue
        rows, entry.note = outcome
        entry.rows_left = len(rows)
        by_index[index] = entry
        yield rows, np.full(len(rows), index, np.int32)

    def finished():
      while queue and queue[0].rows_left == 0:
        entry = queue.popleft()
        by_index.pop(entry.index, None)
        yield entry.prediction(self.class_names)

    for log_probs, ids in self._batches(pieces()):
      for row, index in zip(log_probs, ids):
        entry = by_index[int(index)]
        entry.log_probs.append(row)
        entry.rows_left -= 1
      yield from finished()
    yield from finished()

  def _read_ahead(self, files: list[str], threads: int):
    """Yields (index, path, (rows, note) or the reason it is unreadable) in file order, while
    the next files decode on `threads` threads (0: twice the CPU count, at most 16)."""
    spec = self.file_spec
    threads = threads or min(16, 2 * (os.cpu_count() or 1))
    ahead = max(2 * threads, 2 * -(-self.batch_size // spec.views))  # Enough for 2 batches.

    def read(path):
      try:
        return data_files.read(path, spec)
      except data_files.Unreadable as e:
        return str(e)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      futures = collections.deque()
      for index, path in enumerate(files):
        futures.append((index, path, pool.submit(read, path)))
        if len(futures) >= ahead:
          index, path, future = futures.popleft()
          yield index, path, future.result()
      while futures:
        index, path, future = futures.popleft()
        yield index, path, future.result()


@dataclasses.dataclass
class _Pending:
  """A file on its way: its rows' log-probabilities as they come back from the device."""

  index: int
  path: str
  note: str = ""
  error: str = ""
  rows_left: int = 0
  log_probs: list = dataclasses.field(default_factory=list)

  def prediction(self, class_names) -> FilePrediction:
    if self.error:
      return FilePrediction(self.path, None, class_names, error=self.error)
    _, probabilities, views = evaluation.average_views(
        np.stack(self.log_probs), np.zeros(len(self.log_probs), np.int32))
    return FilePrediction(self.path, probabilities[0], class_names, views=int(views[0]),
                          note=self.note)
