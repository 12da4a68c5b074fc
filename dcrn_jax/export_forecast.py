"""`python -m dcrn_jax.export` of a forecasting run: input frames -> predicted frames, JAX alone.

The folder is export.py's (model.jax, model.json, saved_model/ with --saved_model, written
whole); the function is evaluation's forecast (`forecast_evaluation.forecast`) of whichever
forecaster the run trained, traced in its CPU and accelerator forms (`export.model_fn`):

    x float32 (batch, Tin, H, W, C)  ->  float32 (batch, Tout, H, W, C)

batch symbolic (any size), Tin = data.input_frames, Tout = data.output_frames. Inputs are the
past frames as model inputs (pixels / 255, then the run's normalisation when it had one; what
`ForecastPredictor.read` makes of clip files); outputs are in the same space, not clipped.
model.json says so, with the shapes and the constants.
"""

import functools
import os

from dcrn_jax import export
from dcrn_jax.tasks import forecast_evaluation


def serves(predictor) -> bool:
  """Whether `predictor` (what Predictor.from_workdir restored) is a forecaster's."""
  from dcrn_jax.predict_forecast import ForecastPredictor  # pylint: disable=g-import-not-at-top
  return isinstance(predictor, ForecastPredictor)


def forecast_fn(predictor, platforms=export.PLATFORMS):
  """(fn, signature): fn maps float32 (b, Tin, H, W, C) to (b, Tout, H, W, C) (module doc)."""
  apply = export.model_fn(predictor.model, predictor.variables, platforms)
  fn = functools.partial(forecast_evaluation.forecast, None,
                         apply_fn=lambda _, x, train: apply(x),
                         output_frames=predictor.output_frames)
  return fn, ("batch",) + predictor.input_shape


def _preprocessing(predictor) -> dict:
  d, spec = predictor.config.data, predictor.frame_spec
  t_in, t_out = predictor.input_frames, predictor.output_frames
  return {
      "kind": "frames", "input_frames": t_in, "output_frames": t_out,
      "scale": "pixels / 255 (uint8 -> [0, 1]); float frames in [0, 1] as they are",
      "normalize_mean": list(d.normalize_mean), "normalize_std": list(d.normalize_std),
      "channels": {1: "grey", 3: "RGB"}[spec.channels],
      "frame_stride": spec.stride, "resize_short": spec.resize_short,
      "crop_size": [spec.height, spec.width],
      "how": f"the first {t_in} frames of a sequence, oldest first (of a video: frames 0, "
             "frame_stride, 2 x frame_stride, ..., resized so the shorter side is "
             "resize_short, then the centre crop_size crop; arrays as they are); then scale "
             "and normalise",
  }


def metadata(predictor, exported, signature, workdir: str) -> dict:
  """model.json of a forecaster: how to load it, feed it and read its output."""
  d = predictor.config.data
  undo = (f"x * {list(d.normalize_std)} + {list(d.normalize_mean)}, then clipped to [0, 1]"
          if tuple(d.normalize_mean) else "clipped to [0, 1]")
  return {
      **export.loader_metadata(exported),
      "task": "forecast",
      "input": {"shape": list(signature), "dtype": "float32",
                "layout": "channels-last; 'batch' is any size; axis 1: the past frames, "
                          "oldest first"},
      "output": {"shape": ["batch", predictor.output_frames, *signature[2:]],
                 "dtype": "float32",
                 "meaning": "the predicted next frames, in the space of the input (not "
                            f"clipped); as pixels in [0, 1]: {undo}"},
      "preprocessing": _preprocessing(predictor),
      "source": {"workdir": os.path.abspath(workdir), "step": predictor.step,
                 "model": predictor.config.model.to_dict(), "data": d.name},
  }
