"""Stacked ConvLSTM classifier on moving_digits: a stride-4 conv stem, two ConvLSTM layers.

Training a ConvLSTM through nn.scan is slow on CPU (see README: a faster layer is planned), so
this config keeps the recurrent maps small (16x16).
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
