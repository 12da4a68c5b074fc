"""Row LSTM on Fashion-MNIST: each 28x28 image is read top to bottom as 28 rows of 28 pixels.

Data as in configs/fashion_mnist_cnn.py (offline from local idx files); no flips or crops, so
every row keeps its place in the sequence.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "row_lstm"
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.data.name = "fashion_mnist"
  config.data.normalize_mean = (0.286,)
  config.data.normalize_std = (0.353,)
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_train_steps = 3000
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  return config
