"""Moving Fashion-MNIST, and a short training run on the real Fashion-MNIST.

The real run needs Debian's `dataset-fashion-mnist` package (CI installs it); elsewhere it is
skipped with the reason.
"""

import numpy as np
import pytest

from configs import default, fashion_mnist_cnn
from dcrn_jax import data, train
from dcrn_jax.datasets import bouncing
from dcrn_jax.datasets.fashion_mnist import idx
from dcrn_jax.datasets.moving_fashion import render as moving_fashion
from dcrn_jax.errors import UserError

pytestmark = pytest.mark.needs_tf  # TFDS, tf.data or video sources throughout.


def _direction_free(positions):
  """True if a (T, 2) path never moves."""
  return np.allclose(positions, positions[0])


def test_render_clip_one_item_moves_and_its_class_is_the_label():
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, size=(40, 28, 28), dtype=np.uint8)
  classes = np.arange(40) % 10
  labels = set()
  for seed in range(12):
    ex = moving_fashion.render_clip(np.random.default_rng(seed), images, classes, num_frames=8,
                                    image_size=64)
    assert ex["video"].shape == (8, 64, 64, 1) and ex["video"].dtype == np.uint8
    moving, still = ex["positions"][:, 0], ex["positions"][:, 1]
    assert _direction_free(still) and not _direction_free(moving)
    assert np.all(ex["positions"] >= 0) and np.all(ex["positions"] <= 64 - 28)
    steps = np.linalg.norm(np.diff(moving.astype(np.float64), axis=0), axis=1)
    assert steps.max() <= bouncing.speed_range(64)[1] + 1e-4
    assert ex["label"] == ex["classes"][0] == classes[ex["source_index"][0]]
    assert ex["classes"][0] != ex["classes"][1]
    # A frame shows both items: the still one is drawn at the same place in every frame.
    row, col = np.rint(still[0]).astype(int)
    window = ex["video"][:, row:row + 28, col:col + 28, 0]
    assert np.all(window >= images[ex["source_index"][1]])
    labels.add(ex["label"])
  assert len(labels) >= 5


def test_moving_fashion_builder_from_idx_files(tmp_path, fake_fashion_idx):
  folder, _ = fake_fashion_idx(30, 20)
  config = default.get_config().data
  config.name, config.data_dir, config.manual_dir = "moving_fashion", str(tmp_path), folder
  config.num_frames, config.image_size = 4, 32
  config.num_train_examples, config.num_test_examples = 6, 5
  info = data.get_info(config)
  assert info.input_shape == (4, 32, 32, 1) and info.num_classes == 10
  assert info.class_names == moving_fashion.CLASS_NAMES
  assert (info.num_train_examples, info.num_eval_examples) == (6, 5)
  batches = list(data.eval_batches(config, local_batch_size=5))
  assert len(batches) == 1 and batches[0]["mask"].sum() == 5
  assert np.all((0 <= batches[0]["label"]) & (batches[0]["label"] < 10))
  config.manual_dir, config.data_dir = str(tmp_path / "nothing"), str(tmp_path / "other")
  with pytest.raises(UserError, match="dataset-fashion-mnist"):
    data.get_info(config)


@pytest.mark.slow
@pytest.mark.skipif(not idx.has_files(idx.DEBIAN_FASHION_MNIST),
                    reason="needs Debian's dataset-fashion-mnist package (apt-get install "
                           "dataset-fashion-mnist); .ci/run installs it")
def test_cnn_learns_real_fashion_mnist(tmp_path):
  config = fashion_mnist_cnn.get_config()
  config.data.data_dir = str(tmp_path / "tfds")  # Prepared here from the idx files (~20 s).
  config.data.eval_split = "test[:2000]"
  config.model.conv_features, config.model.convs_per_block = (16, 32), 1
  config.model.embed_dim, config.model.dropout = 64, 0.0
  config.batch_size, config.eval_batch_size = 64, 500
  config.num_train_steps, config.log_every_steps = 150, 50
  config.eval_every_steps, config.checkpoint_every_steps = 0, 0
  config.optim.warmup_steps = 20
  config.progress_bar = False
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["num_examples"] == 2000
  # 10 classes: chance is 10 %, and a constant guess 10 %; 150 steps of 64 real images
  # (a sixth of an epoch) take a small CNN well past 75 %.
  assert result["accuracy"] > 0.75, result
