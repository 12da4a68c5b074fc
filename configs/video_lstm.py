"""Conv + pool per frame, then an LSTM over time: the classic DCRN/LRCN, on moving_digits."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "cnn_lstm"
  config.model.conv_features = (16, 32, 64)
  config.model.stem_stride = 4
  config.model.embed_dim = 128
  config.model.hidden_size = 128
  config.model.dropout = 0.1
  config.data.name = "moving_digits"
  config.num_train_steps = 600
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 200
  return config
