"""Stacked ConvLSTM on moving_fashion: which of two Fashion-MNIST items is the one that moves?

Clips of 10 frames of 64x64 show two items of different classes; one bounces around, the other
stands still, and the label is the moving item's class (10 classes): one frame cannot tell it.
Prepared offline from the Fashion-MNIST idx files (see configs/fashion_mnist_cnn.py). As in
configs/convlstm.py, a stride-4 stem keeps the recurrent maps at 16x16, which keeps training on
a CPU short.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "convlstm"
  config.model.convlstm_features = (32, 32)
  config.model.convlstm_kernel = 3
  config.model.stem_stride = 4
  config.model.head_hidden = 64
  config.data.name = "moving_fashion"
  config.data.num_frames = 10
  config.data.image_size = 64
  config.batch_size = 16
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 250
  config.optim.learning_rate = 1e-3
  return config
