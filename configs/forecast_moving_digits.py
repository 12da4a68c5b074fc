"""Forecasting on moving_digits_seq: 10 frames of two bouncing digits in, the next 10 out.

Shi et al.'s ConvLSTM encoder-forecaster (`convlstm_forecaster`) on 32x32 frames read as 8x8
maps of 4x4 patches (`model.patch_size=4`): two 32-feature layers keep a train step cheap
(~16 GFLOP, an estimate from the layer sizes; the full 1,500 steps were not timed on our shared
2-core machine). Sequences are drawn fresh every epoch (OpenSTL's Moving MNIST
process with scikit-learn's digits); the fixed test set has 1,000 sequences. `--mode=eval`
writes eval.json (MSE, MAE, SSIM, PSNR, per-step MSE, the last-frame and all-zeros baselines)
and WORKDIR/forecast_examples.png.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.task = "forecast"
  config.model.name = "convlstm_forecaster"
  config.model.convlstm_features = (32, 32)
  config.model.convlstm_kernel = 3
  config.model.patch_size = 4
  config.data.name = "moving_digits_seq"
  config.data.image_size = 32
  config.data.num_digits = 2
  config.data.num_frames = 20
  config.data.input_frames = 10
  config.data.output_frames = 10
  config.data.num_train_examples = 10_000
  config.data.num_test_examples = 1000
  config.batch_size = 16
  config.eval_batch_size = 64
  config.num_train_steps = 1500
  config.log_every_steps = 100
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 500
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  return config
