"""Three conv/pool blocks + dense head on CIFAR-10 through TFDS (downloads once when online)."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "cnn"
  config.model.conv_features = (32, 64, 128)
  config.model.convs_per_block = 2
  config.model.embed_dim = 256
  config.model.batch_norm = True
  config.model.dropout = 0.3
  config.data.name = "cifar10"
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_train_steps = 10_000
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  config.optim.optimizer = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 5e-4
  config.optim.warmup_steps = 500
  config.label_smoothing = 0.1
  return config
