"""The report's forecasting sections, the same for every model of the forecasting task.

  forecast quality   eval.json's metrics for the model beside its two baselines (the last
                     input frame repeated; all zeros), OpenSTL's definitions
                     (forecast_evaluation.py)
  forecasts          the first test sequences forecast by the evaluated checkpoint
                     (`ForecastPredictor`, evaluation's own forecast step): per sequence an
                     animation (the inputs, then truth | prediction side by side), a strip
                     (input | truth | prediction: `forecast_pictures`, as --mode=eval and
                     predict draw them) and its MSE and SSIM beside the last-frame baseline's

Nothing here depends on which forecaster it is: the checkpoint is restored by the run's config
and asked for its forecast as evaluation asks.
"""

import html

import numpy as np

from dcrn_jax import evaluation
from dcrn_jax.tasks import forecast_evaluation, forecast_pictures
from dcrn_jax.report import page

_BASELINES = (("model", ""), ("last input frame repeated", "baseline_last_frame_"),
              ("all zeros", "baseline_zeros_"))


def quality_table(results: dict) -> str | None:
  """eval.json's frame metrics for the model and its baselines (None when it has none)."""
  names = [n for n in evaluation.FORECAST_FRAME_METRICS if n in results]
  if not names:
    return None
  head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
  rows = "".join(
      f"<tr><td>{html.escape(label)}</td>" + "".join(
          f"<td>{results[prefix + n]:.4f}</td>" if prefix + n in results else "<td>-</td>"
          for n in names) + "</tr>" for label, prefix in _BASELINES)
  return (f"<table><tr><th>forecast</th>{head}</tr>{rows}</table>" + page.paragraph(
      f"{results.get('num_examples')} test sequences at step {results.get('step')}; MSE and "
      "MAE per frame are sums over its pixels (OpenSTL's definitions); higher SSIM and PSNR "
      "are better."))


def test_sequences(config, count: int) -> np.ndarray:
  """The first `count` sequences of the eval split as model inputs, float32 (n, T, H, W, C):
  the source's pixels scaled as the steps and predict scale them (`input_scaling`)."""
  from dcrn_jax import data  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict_forecast import model_input  # pylint: disable=g-import-not-at-top
  kept = []
  for batch in data.eval_batches(config.data, local_batch_size=config.eval_batch_size,
                                 scaled=False):
    kept += [x for x, m in zip(batch["inputs"], batch["mask"]) if m > 0]
    if len(kept) >= count:
      break
  x = np.stack(kept[:count])
  return model_input(x, config.data)


def _scores(inputs, targets, predictions) -> str:
  model = forecast_evaluation.frame_metrics(predictions[None], targets[None])
  last = np.repeat(inputs[None, -1:], len(targets), axis=1)
  baseline = forecast_evaluation.frame_metrics(last, targets[None])
  return (f"MSE {float(model['mse'].mean()):.2f}<br>SSIM {float(model['ssim'].mean()):.3f}"
          f"<br><span class='note'>last frame: MSE {float(baseline['mse'].mean()):.2f}</span>")


def gallery(workdir: str, config, results: dict | None, folder: str, count: int,
            log) -> str:
  """The forecasts' cards (module docstring), pictures written into folder."""
  from dcrn_jax import predict_forecast  # pylint: disable=g-import-not-at-top
  to_pixels = predict_forecast.to_pixels
  step = results.get("step") if results else None  # The evaluated checkpoint.
  p = predict_forecast.ForecastPredictor.from_workdir(workdir, step)
  sequences = test_sequences(config, count)
  log(f"forecasting {len(sequences)} test sequences with step {p.step}")
  predictions = p.predict_arrays(sequences)
  t_in, d = p.input_frames, config.data
  cards = []
  for i, (sequence, prediction) in enumerate(zip(sequences, predictions)):
    inputs, targets = sequence[:t_in], sequence[t_in:t_in + p.output_frames]
    shown = [to_pixels(x, d) for x in (inputs, targets, prediction)]
    moving = f"forecast{i}.webp"
    forecast_pictures.save_animation(
        forecast_pictures.sequence_gif(*shown), f"{folder}/{moving}")
    strip = f"forecast_strip{i}.png"
    forecast_pictures.strip_png(shown[0], shown[2], shown[1]).save(f"{folder}/{strip}")
    cards.append(f"<div class='card'><div class='meta'><b>test sequence {i}</b><br>"
                 f"{_scores(inputs, targets, prediction)}</div>{page.image(moving, 'forecast')}"
                 f"{page.image(strip, 'input, truth and prediction')}</div>")
  what = page.paragraph(
      f"The first {len(cards)} test sequences, forecast by step {p.step}: each animation plays "
      f"the {t_in} input frames, then the true future (left) beside the forecast (right); each "
      "strip shows input, truth and prediction frame by frame.")
  return what + "<div class='cards'>" + "".join(cards) + "</div>"
