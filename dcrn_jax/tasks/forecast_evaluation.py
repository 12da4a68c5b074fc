"""Forecasting's evaluation, beside evaluation.py's and in its shape: rows -> per-frame errors ->
metrics, as OpenSTL (`openstl/core/metrics.py`) defines them.

    rows (eval batches of whole sequences, Tin + Tout frames)
        ->  per row and predicted frame t (jit, batch split over devices, results replicated on
            every process): the errors of three forecasts of the Tout future frames: the
            model's, the last input frame repeated, and all zeros
        ->  metrics over the rows whose mask is 1 (padding dropped), so each sequence counts
            exactly once whatever the number of processes

Definitions (pixels in [0, 1]; n sequences, Tout future frames; `pred` the raw prediction):
  mse   = mean_{n,t} sum_{h,w,c} (pred - true)^2     OpenSTL's MSE: a per-frame *sum*, so an
                                                     MSE of 29.80 on 64x64x1 frames is ~0.0073
                                                     per pixel
  mae   = mean_{n,t} sum_{h,w,c} |pred - true|
  ssim  = mean_{n,t} SSIM(clip(pred, 0, 1), true)    scikit-image's `structural_similarity`
                                                     as OpenSTL calls it (7x7 uniform window,
                                                     sample covariance, K1 0.01, K2 0.03), with
                                                     data_range 1; computed with dm-pix
  psnr  = mean_{n,t} -10 log10(mean_{h,w,c} (clip(pred, 0, 1) - true)^2)   (peak 1)
  mse_per_step[t] = mean_n sum_{h,w,c} (pred_t - true_t)^2   how the error grows with the horizon
  loss  = the training loss (per-pixel mean squared error + l1_weight x mean absolute error,
          over every frame the model predicts), at evaluation (no teacher forcing)
The same four metrics, and mse_per_step, prefixed `baseline_last_frame_` (every future frame
is the last input frame) and `baseline_zeros_` (every future frame is black, no per-step list),
say what the model adds.
"""

import functools
import math

import dm_pix as pix
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from dcrn_jax import evaluation, host, parallel
from dcrn_jax.errors import UserError

SSIM_WINDOW = 7  # scikit-image's default window: uniform, 7x7.
# scikit-image divides variances and covariance by N - 1 (sample covariance, its default); in
# SSIM that equals N-divided ones with C2 scaled by (N - 1) / N, i.e. K2 by its square root.
_SSIM_K2 = 0.03 * math.sqrt((SSIM_WINDOW ** 2 - 1) / SSIM_WINDOW ** 2)
# The metric names (with their directions) are declared in evaluation.py.
FRAME_METRICS = tuple(evaluation.FORECAST_FRAME_METRICS)
FORECASTS = evaluation.FORECASTS


def _window_mean(z):
  """Mean over every 7x7 window lying inside the frame: (N, H, W, C) -> (N, H-6, W-6, C)."""
  k = SSIM_WINDOW
  total = lax.reduce_window(z, 0.0, lax.add, (1, k, k, 1), (1, 1, 1, 1), "VALID")
  return total / (k * k)


def _frames(x):
  """(..., H, W, C) -> float32 (N, H, W, C): dm-pix takes one leading axis."""
  return x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)


def ssim(pred, true):
  """SSIM per frame as scikit-image's structural_similarity(pred, true, data_range=1) with its
  defaults: float32 (..., H, W, C) pairs -> (...)."""
  values = pix.ssim(_frames(pred), _frames(true), max_val=1.0, k1=0.01, k2=_SSIM_K2,
                    filter_fn=_window_mean)
  return values.reshape(pred.shape[:-3])


def psnr(pred, true):
  """PSNR per frame, peak 1: (..., H, W, C) pairs -> (...)."""
  return pix.psnr(_frames(pred), _frames(true)).reshape(pred.shape[:-3])


def frame_metrics(pred, true) -> dict:
  """The per-frame metrics of the module docstring: (B, T, H, W, C) pairs -> each (B, T)."""
  err = pred - true
  clipped = jnp.clip(pred, 0.0, 1.0)
  return {"mse": jnp.sum(err ** 2, axis=(2, 3, 4)), "mae": jnp.sum(jnp.abs(err), axis=(2, 3, 4)),
          "ssim": ssim(clipped, true), "psnr": psnr(clipped, true)}


def forecast_loss(predictions, frames, l1_weight: float = 0.0):
  """Per-sequence training loss (B,): predictions (B, K, ...) of the last K of `frames`
  (B, T, ...): mean squared error per pixel, plus l1_weight x mean absolute error."""
  err = predictions - frames[:, frames.shape[1] - predictions.shape[1]:]
  axes = tuple(range(1, err.ndim))
  loss = jnp.mean(err ** 2, axis=axes)
  if l1_weight:
    loss = loss + l1_weight * jnp.mean(jnp.abs(err), axis=axes)
  return loss


def split(sequences, input_frames: int, output_frames: int):
  """(B, T, H, W, C) -> inputs (B, Tin, ...), targets (B, Tout, ...), the whole (B, Tin+Tout)."""
  frames = sequences[:, :input_frames + output_frames]
  return frames[:, :input_frames], frames[:, input_frames:], frames


def rows_step(variables: dict, batch: dict, *, apply_fn, input_frames: int, output_frames: int,
              l1_weight: float) -> dict:
  """Per-row results of one eval batch: 'loss' (B,), '<prefix><metric>' (B, Tout) for every
  forecast and frame metric, with the rows' 'mask' and 'example_id' (B,)."""
  inputs, targets, frames = split(batch["inputs"], input_frames, output_frames)
  predictions = apply_fn(variables, inputs, train=False)
  out = {"loss": forecast_loss(predictions, frames, l1_weight), "mask": batch["mask"],
         "example_id": batch["example_id"]}
  # The zeros are computed from the data: as a constant, XLA would spend minutes folding the
  # SSIM's window sums over it at compile time.
  forecasts = (predictions[:, -output_frames:],
               jnp.repeat(inputs[:, -1:], output_frames, axis=1), targets * 0.0)
  for prefix, forecast in zip(FORECASTS, forecasts):
    out.update({prefix + k: v for k, v in frame_metrics(forecast, targets).items()})
  return out


def forecast(variables: dict, inputs, *, apply_fn, output_frames: int):
  """The model's forecast of the output_frames frames after `inputs` (B, Tin, H, W, C): float32
  (B, Tout, H, W, C), the last Tout of the frames the model returns (every forecaster returns
  its predictions aligned with the end of the Tin + Tout sequence), not clipped."""
  return apply_fn(variables, inputs, train=False)[:, -output_frames:]


def forecast_step(variables: dict, batch: dict, *, apply_fn, output_frames: int) -> dict:
  """'predictions' (B, Tout, H, W, C) of a batch of 'inputs' (B, Tin, H, W, C): what predict
  (dcrn_jax/predict_forecast.py) runs, evaluation's `forecast`."""
  return {"predictions": forecast(variables, batch["inputs"], apply_fn=apply_fn,
                                  output_frames=output_frames)}


def examples_step(variables: dict, batch: dict, *, apply_fn, input_frames: int,
                  output_frames: int, num_shown: int) -> dict:
  """The first num_shown rows of a batch, for pictures: 'inputs' (k, Tin, ...), 'targets' and
  'predictions' (k, Tout, ...) (clipped to [0, 1]), 'mask', 'example_id' (k,)."""
  inputs, targets, _ = split(batch["inputs"][:num_shown], input_frames, output_frames)
  predictions = forecast(variables, inputs, apply_fn=apply_fn, output_frames=output_frames)
  return {"inputs": inputs, "targets": targets, "predictions": jnp.clip(predictions, 0.0, 1.0),
          "mask": batch["mask"][:num_shown], "example_id": batch["example_id"][:num_shown]}


def _jit(fn, mesh):
  return jax.jit(fn, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh), compiler_options=host.compiler_options())


def make_rows_fn(model, mesh, *, input_frames: int, output_frames: int, l1_weight: float):
  """jit(rows_step): variables replicated, batch split on `data`, outputs replicated."""
  return _jit(functools.partial(rows_step, apply_fn=model.apply, input_frames=input_frames,
                                output_frames=output_frames, l1_weight=l1_weight), mesh)


def make_examples_fn(model, mesh, *, input_frames: int, output_frames: int, num_shown: int):
  """jit(examples_step), sharded as make_rows_fn."""
  return _jit(functools.partial(examples_step, apply_fn=model.apply, input_frames=input_frames,
                                output_frames=output_frames, num_shown=num_shown), mesh)


def make_forecast_fn(model, mesh, *, output_frames: int):
  """jit(forecast_step), sharded as make_rows_fn."""
  return _jit(functools.partial(forecast_step, apply_fn=model.apply,
                                output_frames=output_frames), mesh)


def metrics(rows: dict) -> dict:
  """Gathered rows (padding included) -> the metrics of the module docstring, plus
  num_examples (sequences scored)."""
  real = np.asarray(rows["mask"]) > 0
  n = int(real.sum())
  if n == 0:
    raise UserError("the eval split is empty: there is nothing to evaluate")
  pick = lambda key: np.asarray(rows[key], np.float64)[real]
  out = {"loss": float(np.mean(pick("loss")))}
  for prefix in FORECASTS:
    for name in FRAME_METRICS:
      out[prefix + name] = float(np.mean(pick(prefix + name)))
  for prefix in FORECASTS[:2]:
    out[prefix + "mse_per_step"] = [float(v) for v in np.mean(pick(prefix + "mse"), axis=0)]
  out["num_examples"] = n
  return out


def shown_examples(examples: dict) -> dict:
  """The real rows of examples_step's output, as numpy arrays."""
  real = np.asarray(examples["mask"]) > 0
  return {k: np.asarray(v)[real] for k, v in examples.items() if k != "mask"}


def evaluate(rows_fn, variables, batches, mesh, prefetch: int = 2, examples_fn=None):
  """(metrics, examples) of one pass over `batches`; examples (for pictures) from the first
  batch if examples_fn is given, else None."""
  examples = []

  def first_batch_too(stream):
    for i, batch in enumerate(stream):
      if i == 0 and examples_fn is not None:
        examples.append(shown_examples(jax.device_get(examples_fn(variables, batch))))
      yield batch

  rows = evaluation.gather_rows(rows_fn, variables, batches, mesh, prefetch,
                                wrap=first_batch_too)
  return metrics(rows), (examples[0] if examples else None)
