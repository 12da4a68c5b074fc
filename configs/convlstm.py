"""Stacked ConvLSTM classifier on moving_digits: a stride-4 conv stem, two ConvLSTM layers.

The stem turns the 64x64 frames into 16x16 maps, which keeps the two 16-feature ConvLSTM layers
(dcrn_jax/models/recurrent.py) cheap to train on a CPU.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "convlstm"
  config.model.convlstm_features = (16, 16)
  config.model.convlstm_kernel = 3
  config.model.stem_stride = 4
  config.data.name = "moving_digits"
  config.batch_size = 16
  config.num_train_steps = 400
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 100
  return config
