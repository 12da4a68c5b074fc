"""CNN baseline on Fashion-MNIST (TFDS `fashion_mnist`), offline from local idx files.

If fashion_mnist is not yet in data.data_dir, it is prepared from the idx files in
data.manual_dir (by default /usr/share/datasets/fashion-mnist, from Debian's
`dataset-fashion-mnist` package) in about 20 s; elsewhere TFDS downloads it once.
Two blocks of two 3x3 convs + batch norm + max-pool, a dense layer, dropout; random crops
(2 px padding) and left-right flips for training.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "cnn"
  config.model.conv_features = (32, 64)
  config.model.convs_per_block = 2
  config.model.embed_dim = 256
  config.model.batch_norm = True
  config.model.dropout = 0.3
  config.data.name = "fashion_mnist"
  config.data.augment_crop_padding = 2
  config.data.augment_flip = True
  config.data.normalize_mean = (0.286,)  # Fashion-MNIST's pixel mean and std (train split).
  config.data.normalize_std = (0.353,)
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_train_steps = 4000  # About 8.5 epochs of the 60,000 train images.
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.optim.optimizer = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.warmup_steps = 200
  return config
