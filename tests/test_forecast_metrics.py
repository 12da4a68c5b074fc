"""Forecasting metrics as OpenSTL defines them: per-frame sums, SSIM as scikit-image computes it,
padding dropped, the trivial baselines, and the metric directions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from dcrn_jax import evaluation
from dcrn_jax.tasks import forecast_evaluation as fe
from dcrn_jax.data import sequences
from dcrn_jax.errors import UserError
from configs import default

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.


def _frames(seed, shape=(3, 4, 32, 32, 1)):
  """Sequences of bouncing digits (real structure for SSIM) and noisy predictions of them,
  some outside [0, 1] so that clipping matters."""
  config = default.get_config().data
  config.name, config.image_size, config.num_frames, config.num_digits = (
      "moving_digits_seq", shape[2], shape[1], 2)
  true = np.stack([sequences._draw(sequences._sprites(config, "test"), (seed,), i, config)
                   for i in range(shape[0])]).astype(np.float32) / 255
  rng = np.random.default_rng(seed)
  pred = true + rng.normal(0, 0.2, true.shape).astype(np.float32)
  pred[0, 0, :4] = 1.5  # Above the range: SSIM and PSNR clip it, MSE and MAE do not.
  return pred, true


def test_mse_and_mae_are_per_frame_sums_averaged_over_batch_and_time():
  pred, true = _frames(0)
  out = jax.device_get(fe.frame_metrics(jnp.asarray(pred), jnp.asarray(true)))
  # OpenSTL's MSE/MAE of (B, T, C, H, W) arrays: np.mean(err, axis=(0, 1)).sum().
  err = np.moveaxis(pred - true, -1, 2).astype(np.float64)
  np.testing.assert_allclose(out["mse"].mean(), np.mean(err ** 2, axis=(0, 1)).sum(), rtol=1e-5)
  np.testing.assert_allclose(out["mae"].mean(), np.mean(np.abs(err), axis=(0, 1)).sum(),
                             rtol=1e-5)
  assert out["mse"].shape == (3, 4)
  # Per-pixel mean x pixels per frame: 32 * 32 * 1.
  np.testing.assert_allclose(out["mse"][1, 2], np.mean((pred[1, 2] - true[1, 2]) ** 2) * 1024,
                             rtol=1e-5)


def test_ssim_and_psnr_match_scikit_image_and_openstl_on_clipped_predictions():
  pred, true = _frames(1)
  out = jax.device_get(fe.frame_metrics(jnp.asarray(pred), jnp.asarray(true)))
  clipped = np.clip(pred, 0, 1).astype(np.float64)
  for b in range(pred.shape[0]):
    for t in range(pred.shape[1]):
      want = structural_similarity(clipped[b, t, ..., 0], true[b, t, ..., 0].astype(np.float64),
                                   data_range=1.0)
      np.testing.assert_allclose(out["ssim"][b, t], want, atol=2e-5, err_msg=f"frame {b},{t}")
      mse = np.mean((clipped[b, t] - true[b, t]) ** 2)
      np.testing.assert_allclose(out["psnr"][b, t], 20 * np.log10(1 / np.sqrt(mse)), rtol=1e-5)
  assert 0.1 < out["ssim"].mean() < 0.9  # A real comparison, neither trivial end.
  identical = jax.device_get(fe.ssim(jnp.asarray(true), jnp.asarray(true)))
  np.testing.assert_allclose(identical, 1.0, atol=1e-6)


def _rows(pred, true, inputs_last):
  """metrics() input built from frame_metrics of the three forecasts, with a mask of ones."""
  rows = {"loss": np.zeros(len(pred)), "mask": np.ones(len(pred)),
          "example_id": np.arange(len(pred))}
  forecasts = (pred, np.repeat(inputs_last, true.shape[1], axis=1), np.zeros_like(true))
  for prefix, forecast in zip(fe.FORECASTS, forecasts):
    out = jax.device_get(fe.frame_metrics(jnp.asarray(forecast), jnp.asarray(true)))
    rows.update({prefix + k: v for k, v in out.items()})
  return rows


def test_padding_rows_are_dropped_and_every_written_metric_has_a_direction():
  pred, true = _frames(2)
  rows = _rows(pred, true, true[:, :1])
  clean = fe.metrics(rows)
  padded = {k: np.concatenate([v, np.full_like(v[:2], 1e6)]) for k, v in rows.items()}
  padded["mask"][-2:] = 0
  assert fe.metrics(padded) == clean
  assert clean["num_examples"] == 3 and len(clean["mse_per_step"]) == 4
  np.testing.assert_allclose(np.mean(clean["mse_per_step"]), clean["mse"])
  scalars = {k for k, v in clean.items() if isinstance(v, float)}
  assert scalars <= set(evaluation.METRIC_DIRECTIONS), scalars - set(evaluation.METRIC_DIRECTIONS)
  assert evaluation.METRIC_DIRECTIONS["mse"] == "min"
  assert evaluation.METRIC_DIRECTIONS["ssim"] == "max"
  with pytest.raises(UserError, match="empty"):
    fe.metrics({k: v[:0] for k, v in rows.items()})


def test_rows_step_scores_the_last_frame_and_zero_baselines():
  """A sequence that stands still: repeating the last input frame is a perfect forecast."""
  still = np.repeat(_frames(3, (2, 1, 32, 32, 1))[1], 6, axis=1)  # (2, 6, 32, 32, 1)
  batch = {"inputs": jnp.asarray(still), "mask": jnp.ones(2), "example_id": jnp.arange(2)}
  apply_fn = lambda variables, inputs, train: jnp.zeros((2, 3) + still.shape[2:]) + 0.5
  rows = jax.device_get(fe.rows_step({}, batch, apply_fn=apply_fn, input_frames=3,
                                     output_frames=3, l1_weight=0.0))
  result = fe.metrics(rows)
  assert result["baseline_last_frame_mse"] == 0 and result["baseline_last_frame_mae"] == 0
  np.testing.assert_allclose(result["baseline_zeros_mse"], np.mean(np.sum(still[:, 3:] ** 2,
                                                                          axis=(2, 3, 4))),
                             rtol=1e-5)
  np.testing.assert_allclose(result["loss"], np.mean((0.5 - still[:, 3:]) ** 2), rtol=1e-5)
  assert result["mse"] > 0


def test_the_per_step_picture_draws_the_model_and_the_baseline(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from dcrn_jax.tasks import forecast_pictures  # pylint: disable=g-import-not-at-top
  results = {"mse_per_step": [10.0, 20.0, 30.0], "baseline_last_frame_mse_per_step": [15, 40, 70],
             "step": 7, "num_examples": 5}
  path = forecast_pictures.mse_per_step_png(str(tmp_path), results)
  assert path == str(tmp_path / "forecast_mse_per_step.png")
  image = np.asarray(Image.open(path).convert("RGB")).astype(int)
  assert image.shape[0] > 200 and image.shape[1] > 300
  # The two lines: matplotlib's first two colours (blue, orange) are both drawn.
  for colour in ((31, 119, 180), (255, 127, 14)):
    assert (np.abs(image - colour).sum(-1) < 40).sum() > 50, colour
  assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast_mse_per_step.png"]
  with pytest.raises(KeyError):
    forecast_pictures.mse_per_step_png(str(tmp_path), {"step": 1, "num_examples": 1})
