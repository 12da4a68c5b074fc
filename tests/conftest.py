"""Shared fixtures."""

import os

import pytest


def pytest_addoption(parser):
  parser.addoption("--emulate-tf32", action="store_true",
                   help="round float32 matmul/conv inputs to TF32 at default precision, as "
                        "NVIDIA GPUs do (tests/tf32_emulation.py)")
  parser.addoption("--no-precision-pin", action="store_true",
                   help="make the highest_precision fixture a no-op (to see what it protects)")


def pytest_configure(config):
  if config.getoption("--emulate-tf32"):
    import tf32_emulation  # pylint: disable=g-import-not-at-top
    tf32_emulation.install()


@pytest.fixture(scope="module")
def highest_precision(request):
  """Float32 matmuls and convolutions at full precision for a whole test module, in this process
  and in the subprocesses it starts. JAX's default on GPUs is TF32 (10-bit mantissa inputs) and
  on TPUs bfloat16 passes, so a comparison against reference math or another library holds
  there only when pinned: test files that compare set
  `pytestmark = pytest.mark.usefixtures("highest_precision")` (module scope, so their
  module-scoped fixtures compute under it too)."""
  import jax  # pylint: disable=g-import-not-at-top
  if request.config.getoption("--no-precision-pin"):
    yield
    return
  before = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION")
  os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
  try:
    with jax.default_matmul_precision("highest"):
      yield
  finally:
    if before is None:
      os.environ.pop("JAX_DEFAULT_MATMUL_PRECISION", None)
    else:
      os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = before


@pytest.fixture
def mock_tfds(tmp_path):
  """A context manager: inside it, `tfds` serves `num` random examples per split of `name`
  (tests/tfds_mock.py; nothing is downloaded)."""
  import tfds_mock  # pylint: disable=g-import-not-at-top

  def mock(name: str, num: int, splits=("train", "test")):
    return tfds_mock.mock(name, num, tmp_path / f"{name}_metadata", splits)

  return mock


@pytest.fixture
def mock_cifar10(mock_tfds):
  """mock_tfds for cifar10: a context manager serving `num` random examples per split."""
  return lambda num: mock_tfds("cifar10", num)


def write_idx(path, array):
  """Writes a uint8 array as an MNIST-format idx file (gzip-compressed if path ends in .gz)."""
  import gzip  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


@pytest.fixture
def fake_fashion_idx(tmp_path):
  """A folder with the four Fashion-MNIST idx files holding `num` (train, test) random images.

  Returns make(num_train, num_test) -> (folder, {'train': (images, labels), 'test': ...}).
  Every image is distinct (its first pixels spell its split and index); labels cycle 0..9.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  def make(num_train, num_test):
    folder = tmp_path / "fashion_idx"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # Raw and .gz both.
    for s, (split, num) in enumerate((("train", num_train), ("test", num_test))):
      images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
      images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = s, np.arange(num) // 256, np.arange(num)
      labels = (np.arange(num) % 10).astype(np.uint8)
      write_idx(folder / names[split][0], images)
      write_idx(folder / names[split][1], labels)
      arrays[split] = (images, labels)
    return str(folder), arrays

  return make


# ----------------------------------------------------------------- trained runs for predict/export


def _tiny_training(config, workdir):
  """Trains config for 2 steps into workdir (tiny models: a few seconds)."""
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  config.batch_size, config.eval_batch_size = 4, 8
  config.num_train_steps, config.log_every_steps, config.optim.warmup_steps = 2, 1, 1
  config.checkpoint_every_steps, config.progress_bar = 1, False
  train.train_and_evaluate(config, str(workdir))
  return str(workdir), config


@pytest.fixture(scope="session")
def video_run(tmp_path_factory):
  """(workdir, config, video_dir) of a cnn_gru trained 2 steps on a video_folder of H.264 clips
  written with PyAV (2 classes; test: 2 clips each plus one shorter than a clip), scored on
  2 clips x 3 crops per video. Checkpoints at steps 1 and 2."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import video_gru  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("predict_videos")
  rng = np.random.default_rng(0)
  for split, per_class in (("train", 2), ("test", 2)):
    for k, name in enumerate(("left", "right")):
      (root / split / name).mkdir(parents=True)
      for j in range(per_class):
        frames = rng.integers(0, 256, (9 + 3 * j, 24, 32, 3), dtype=np.uint8)
        frames[..., k * 16:(k + 1) * 16, :] //= 3
        video_files.write_video(str(root / split / name / f"v{j}.mp4"), frames, lossless=False)
  short = rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)  # Shorter than a clip's 7.
  video_files.write_video(str(root / "test" / "left" / "short.mp4"), short, lossless=False)
  config = video_gru.get_config()
  d = config.data
  d.name, d.video_dir, d.num_frames, d.frame_stride = "video_folder", str(root), 4, 2
  d.image_size, d.resize_short, d.num_test_clips, d.num_test_crops = 16, 20, 2, 3
  config.model.stem_stride, config.model.conv_features = 2, (4, 8)
  config.model.embed_dim, config.model.hidden_size = 16, 16
  workdir, config = _tiny_training(config, tmp_path_factory.mktemp("video_run"))
  return workdir, config, str(root)


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
  """(workdir, config) of a cnn trained 2 steps on fashion_mnist prepared from small random idx
  files (60 train, 13 test images), inputs normalised."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  idx = tmp_path_factory.mktemp("predict_idx")
  rng = np.random.default_rng(1)
  for prefix, num in (("train", 60), ("t10k", 13)):
    write_idx(idx / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (num, 28, 28)))
    write_idx(idx / f"{prefix}-labels-idx1-ubyte", np.arange(num) % 10)
  config = default.get_config()
  d = config.data
  d.name, d.manual_dir = "fashion_mnist", str(idx)
  d.data_dir = str(tmp_path_factory.mktemp("predict_tfds"))
  d.normalize_mean, d.normalize_std = (0.3,), (0.4,)
  config.model.name, config.model.conv_features = "cnn", (4, 8)
  return _tiny_training(config, tmp_path_factory.mktemp("image_run"))


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory):
  """(workdir, config) of a cnn_gru trained 2 steps on moving_digits, the default config's
  dataset of stored clips (prepared here: 16 train, 9 test clips of 4 frames of 24x24)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  d = config.data
  d.data_dir = str(tmp_path_factory.mktemp("predict_md"))
  d.image_size, d.num_frames, d.num_train_examples, d.num_test_examples = 24, 4, 16, 9
  d.shuffle_buffer = 100
  config.model.stem_stride, config.model.conv_features = 2, (4, 8)
  config.model.embed_dim, config.model.hidden_size = 16, 16
  return _tiny_training(config, tmp_path_factory.mktemp("clip_run"))


@pytest.fixture
def chromium():
  """Headless Chromium driven by selenium (Debian's chromium and chromium-driver, which .ci/run
  installs), keeping the browser console's log; skips the test where either is missing."""
  import shutil  # pylint: disable=g-import-not-at-top
  webdriver = pytest.importorskip("selenium.webdriver",
                                  reason="selenium is in the test extra: pip install -e '.[test]'")
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
  if not (binary and driver_path):
    pytest.skip("no headless Chromium here: apt-get install chromium chromium-driver "
                "(.ci/run does)")
  options = webdriver.ChromeOptions()
  options.binary_location = binary
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,2400"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  driver = webdriver.Chrome(service=Service(driver_path), options=options)
  try:
    yield driver
  finally:
    driver.quit()
