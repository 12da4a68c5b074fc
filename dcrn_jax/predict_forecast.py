"""Use a trained forecaster: a workdir of a task='forecast' run -> predicted frames.

    from dcrn_jax import Predictor
    p = Predictor.from_workdir("runs/forecast")        # a ForecastPredictor for such a run
    p.predict(["seq.npy", "clip.mp4"])[0].predictions   # float32 (Tout, H, W, C)
    p.predict_arrays(x)                                 # x (N, T >= Tin, H, W, C) model inputs

Any model of the forecasting task serves alike: the model the run's config names is built
from the MODELS table and asked for its forecast the way evaluation asks
(`forecast_evaluation.forecast`: the last output_frames frames it returns). The command line
is predict_forecast_cli.py (`python -m dcrn_jax.predict --workdir=W CLIP...`).

Everything a forecast goes through is evaluation's: a clip file's first input_frames frames
(data/sequence_files.py: arrays as they are, videos and animations resized and centre-cropped
as evaluation's centre crop) become model inputs by the train and eval steps' own function
(`input_scaling.model_input`: pixels / 255, then data.normalize_mean/std when set), batches of batch_size rows (the last one padded,
split over every local device) run through forecast_evaluation's jitted `forecast_step`.

Shapes: Tin = data.input_frames, Tout = data.output_frames, (H, W, C) the run's frames.
Predictions are float32 in the space of the model inputs (pixels in [0, 1] unless the run
normalised them), not clipped: what evaluation's MSE is computed on; `to_pixels` makes them
pictures.
"""

import dataclasses
import os

import jax
import numpy as np

from dcrn_jax import feeding, input_scaling, parallel, predict, tasks
from dcrn_jax.tasks import forecast_evaluation
from dcrn_jax.data import files as data_files
from dcrn_jax.data import sequence_files
from dcrn_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ClipForecast:
  """The forecast of one clip file.

  Attributes:
    path: the file.
    inputs: float32 (Tin, H, W, C), the model inputs read from its first Tin frames.
    predictions: float32 (Tout, H, W, C), the predicted next frames (module docstring).
    targets: float32 (Tout, H, W, C), the clip's own next Tout frames as model inputs when it
      has them all, else None.
  """

  path: str
  inputs: np.ndarray = dataclasses.field(repr=False)
  predictions: np.ndarray = dataclasses.field(repr=False)
  targets: np.ndarray | None = dataclasses.field(default=None, repr=False)


def model_input(frames: np.ndarray, data_config) -> np.ndarray:
  """float32 model input of clip frames by the steps' own function (`input_scaling.model_input`):
  uint8 pixels scaled and normalised, float frames in [0, 1] normalised only."""
  return np.asarray(input_scaling.model_input(frames, *feeding.scaling(data_config)))


def to_pixels(x: np.ndarray, data_config) -> np.ndarray:
  """Model-space frames -> float64 pixels in [0, 1] for pictures: the run's normalisation
  undone (x * std + mean), then clipped to [0, 1]."""
  x = np.asarray(x, np.float64)
  mean, std = feeding.scaling(data_config)
  if mean:
    x = x * np.asarray(std) + np.asarray(mean)
  return np.clip(x, 0.0, 1.0)


class ForecastPredictor:
  """A trained forecaster ready to predict, its variables on the devices.

  Public attributes: model, variables, config, step, input_shape (Tin, H, W, C), output_frames
  (Tout), batch_size (sequences per step), mesh, frame_spec (how clip files are read).
  """

  def __init__(self, model, variables: dict, config, *, input_shape, step: int | None = None,
               batch_size: int | None = None):
    self.model, self.config, self.step = model, config, step
    self.input_shape = tuple(int(n) for n in input_shape)
    self.output_frames = int(config.data.output_frames)
    self.mesh = parallel.create_mesh()
    self.variables = jax.device_put(variables, parallel.replicated(self.mesh))
    self.batch_size = predict.rows_per_step(batch_size, config, self.mesh)
    self.frame_spec = sequence_files.frame_spec(config.data, self.input_shape[1:])
    self._forecast_fn = forecast_evaluation.make_forecast_fn(
        model, self.mesh, output_frames=self.output_frames)

  @classmethod
  def from_workdir(cls, workdir: str, step=None, *, batch_size: int | None = None):
    """Restores a forecasting run (arguments as `Predictor.from_workdir`)."""
    config = predict.read_run_config(workdir)
    name = predict.run_task(config)
    if name not in tasks.NAMES or not tasks.get(name).frames_out:
      raise UserError(f"{workdir} holds a run of task={predict.run_task(config)!r}, not a "
                      "forecaster (task='forecast'): use Predictor.from_workdir")
    model, input_shape, step, variables = predict.restore_model(workdir, config, step)
    return cls(model, variables, config, input_shape=input_shape, step=step,
               batch_size=batch_size)

  @property
  def input_frames(self) -> int:
    return self.input_shape[0]

  # ------------------------------------------------------------------ arrays

  def predict_arrays(self, x) -> np.ndarray:
    """Forecasts of already-preprocessed sequences.

    Args:
      x: float (N, T, H, W, C) model inputs with T >= Tin (the first Tin frames are read, so
        whole Tin + Tout sequences of the eval split may be given), or one (T, H, W, C).

    Returns:
      float32 (N, Tout, H, W, C) predicted frames ((Tout, H, W, C) for one sequence), in the
      space of the inputs, not clipped (the module docstring).
    """
    x = np.asarray(x, np.float32)
    single = x.ndim == len(self.input_shape)
    x = x[None] if single else x
    frame = self.input_shape[1:]
    if x.ndim != 5 or x.shape[2:] != frame or x.shape[1] < self.input_frames or not len(x):
      raise UserError(f"inputs of shape {x.shape}: this forecaster takes (N, T, *{frame}) "
                      f"arrays with T >= {self.input_frames} (its input_frames)")
    inputs = x[:, :self.input_frames]
    out = np.concatenate([self._run(inputs[i:i + self.batch_size])
                          for i in range(0, len(inputs), self.batch_size)])
    return out[0] if single else out

  def _run(self, rows: np.ndarray) -> np.ndarray:
    """float32 (r <= batch_size, Tin, H, W, C) -> (r, Tout, H, W, C); padded to one shape so
    the step compiles once."""
    batch = np.zeros((self.batch_size, *self.input_shape), np.float32)
    batch[:len(rows)] = rows
    out = self._forecast_fn(self.variables, parallel.to_global({"inputs": batch}, self.mesh))
    return np.asarray(jax.device_get(out["predictions"]))[:len(rows)]

  # ------------------------------------------------------------------ files

  def read(self, path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(inputs float32 (Tin, H, W, C), targets (Tout, H, W, C) or None) of one clip file, as
    model inputs. UserError for a file that gives fewer than Tin frames of this model's size."""
    count = self.input_frames + self.output_frames
    try:
      frames = sequence_files.read_clip(path, self.frame_spec, count)
    except data_files.Unreadable as e:
      raise UserError(f"{path}: {e}") from None
    if len(frames) < self.input_frames:
      raise UserError(f"{path}: {len(frames)} frame(s), fewer than the {self.input_frames} "
                      f"input frames this forecaster reads (data.input_frames); give clips of "
                      f"at least {self.input_frames} frames")
    x = model_input(frames, self.config.data)
    return x[:self.input_frames], (x[self.input_frames:] if len(x) == count else None)

  def predict(self, paths) -> list[ClipForecast]:
    """Forecasts of clip files and the clip files in folders (recursively), in order.

    Every file is read first: one that cannot serve (unreadable, or shorter than Tin frames)
    raises UserError naming it, before anything is predicted.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    clips = [(path, *self.read(path)) for path in sequence_files.list_clips(paths)]
    predictions = self.predict_arrays(np.stack([inputs for _, inputs, _ in clips]))
    return [ClipForecast(path, inputs, p, targets)
            for (path, inputs, targets), p in zip(clips, predictions)]
