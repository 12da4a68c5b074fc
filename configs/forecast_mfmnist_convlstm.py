"""OpenSTL's ConvLSTM-S on Moving Fashion-MNIST: the recipe for a GPU.

OpenSTL's setting (configs/mfmnist/ConvLSTM.py there): its ConvLSTM stepped frame by frame with
scheduled sampling (our `convlstm_autoregressive`), 4 layers of 128 features, 5x5 kernels, 4x4
patches (64x64x1 frames become 16x16x16), batch 16, Adam at 5e-4 with a one-cycle schedule, 200
epochs of 10,000 fresh training sequences (625 steps each: 125,000 steps); the sampling
probability falls from 1 by 2e-5 per step and is 0 from step 50,000 on. OpenSTL published MSE
28.87, MAE 113.20, SSIM 0.8793, PSNR 22.07 for it on its Moving Fashion-MNIST test set.

Data: `moving_fashion_seq`, 20 frames of two Fashion-MNIST items bouncing in 64x64 (10 in, 10
out), drawn with OpenSTL's generator rule; training sequences from the train images, fresh each
epoch; a fixed test set of 10,000 from the test images (ours, not OpenSTL's file: see docs/guides/forecasting.md).
One train step is ~5.5 TFLOP: too much for a CPU (benchmarks/RESULTS.md has what 2 CPU cores
could train in one sitting, with the command).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.task = "forecast"
  config.model.name = "convlstm_autoregressive"
  config.model.convlstm_features = (128, 128, 128, 128)
  config.model.convlstm_kernel = 5
  config.model.patch_size = 4
  config.data.name = "moving_fashion_seq"
  config.data.image_size = 64
  config.data.num_digits = 2
  config.data.num_frames = 20
  config.data.input_frames = 10
  config.data.output_frames = 10
  config.data.num_train_examples = 10_000
  config.data.num_test_examples = 10_000
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_train_steps = 200 * 10_000 // 16  # 200 epochs
  config.log_every_steps = 625
  config.eval_every_steps = 10 * 625
  config.checkpoint_every_steps = 625
  config.optim.optimizer = "adam"
  config.optim.learning_rate = 5e-4
  config.optim.schedule = "onecycle"
  config.optim.grad_clip_norm = 0.0  # OpenSTL does not clip ConvLSTM's gradients.
  config.forecast.sampling_start = 1.0
  config.forecast.sampling_decay = 2e-5
  config.forecast.sampling_stop_step = 50_000
  return config
