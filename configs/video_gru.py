"""CNN frame encoder + GRU over time on moving_digits (offline): the default experiment.

Each 64x64 frame goes through three conv/pool blocks and a dense projection; a GRU reads the
10 frame embeddings and the last state predicts the direction the digit moves (8 classes).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "cnn_gru"
  config.model.conv_features = (16, 32, 64)
  config.model.stem_stride = 4
  config.model.embed_dim = 128
  config.model.hidden_size = 128
  config.data.name = "moving_digits"
  config.batch_size = 32
  config.num_train_steps = 1500
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.optim.learning_rate = 1e-3
  return config
