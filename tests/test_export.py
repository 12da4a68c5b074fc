"""Export (dcrn_jax/export.py): the inference function as serialized jax.export StableHLO that
loads where only jax (and flatbuffers) is installed and gives the checkpoint's probabilities; the
The loader of docs/guides/trained-model.md is the one tested; a TF SavedModel of the same function."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from dcrn_jax import UserError, export

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5


GUIDE = ROOT / "docs" / "guides" / "trained-model.md"


def guide_loader() -> str:
  """The guide's loader (Use a trained model): the python block that defines load_exported."""
  blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
  loaders = [b for b in blocks if "def load_exported(" in b]
  assert len(loaders) == 1, f"{GUIDE} needs one python block defining load_exported"
  return loaders[0]


@pytest.fixture(scope="module")
def exports(video_run, image_run, tmp_path_factory):
  """{name: (workdir, export folder)}: the video model exported in-process, the image model
  by the command."""
  base = tmp_path_factory.mktemp("exports")
  export.export_workdir(video_run[0], str(base / "video"))
  r = subprocess.run([sys.executable, "-m", "dcrn_jax.export", f"--workdir={image_run[0]}",
                      f"--out={base / 'image'}"], capture_output=True, text=True, cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "exported step 2" in r.stderr and "for cpu, cuda, tpu" in r.stderr
  return {"video": (video_run[0], str(base / "video")), "image": (image_run[0], str(base / "image"))}


@pytest.mark.needs_tf  # its runs read video_folder and fashion_mnist (tf.data).
def test_metadata_says_how_to_feed_the_model_and_read_its_output(exports):
  video = json.loads(pathlib.Path(exports["video"][1], "model.json").read_text())
  assert video["platforms"] == ["cpu", "cuda", "tpu"]
  assert video["load_requires"] == ["jax", "flatbuffers"]
  assert video["input"] == {"shape": ["batch", 6, 4, 16, 16, 3], "dtype": "float32",
                            "layout": "channels-last; 'batch' is any size; axis 1: a video's "
                                      "views"}
  assert video["output"]["shape"] == ["batch", 2] and video["class_names"] == ["left", "right"]
  pre = video["preprocessing"]
  assert (pre["kind"], pre["num_frames"], pre["frame_stride"], pre["resize_short"],
          pre["crop_size"], pre["views"], pre["channels"]) == ("video", 4, 2, 20, 16, 6, "RGB")
  image = json.loads(pathlib.Path(exports["image"][1], "model.json").read_text())
  assert image["input"]["shape"] == ["batch", 28, 28, 1] and len(image["class_names"]) == 10
  assert image["preprocessing"]["normalize_mean"] == [0.3]
  assert image["preprocessing"]["kind"] == "image" and image["source"]["step"] == 2


# What the exported model may need: jax's own requirements, and flatbuffers, which
# jax.export.deserialize imports (jax does not require it).
LOADER_DISTRIBUTIONS = ("jax", "flatbuffers")


def jax_only_site(folder: pathlib.Path) -> set[str]:
  """Fills `folder` with links to the installed jax, its requirements (transitively) and
  flatbuffers, as a site of a machine with nothing else installed; returns their top-level
  module names."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  todo, seen, modules = list(LOADER_DISTRIBUTIONS), set(), set()
  while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
      continue
    seen.add(name)
    dist = metadata.distribution(name)
    todo += [re.match(r"[A-Za-z0-9_.-]+", r).group() for r in dist.requires or []
             if "extra ==" not in r]
    for top in {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "bin")}:
      source = pathlib.Path(dist.locate_file(top))
      if not (folder / top).exists() and source.exists():
        (folder / top).symlink_to(source)
      if not top.endswith((".dist-info", ".libs")) and top != "__pycache__":
        modules.add(top.split(".")[0])
  return modules


@pytest.mark.needs_tf  # its runs read video_folder and fashion_mnist (tf.data).
def test_the_guides_loader_runs_where_only_jax_is_installed_and_matches_the_checkpoint(
    exports, tmp_path):
  """The guide's loader in `python -I -S` (no site-packages, no PYTHONPATH) over a site that
  holds jax, its requirements and flatbuffers only: flax, optax, orbax, TensorFlow and dcrn_jax
  are not there to import."""
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  site = tmp_path / "site"
  site.mkdir()
  allowed = jax_only_site(site)
  assert {"jax", "jaxlib", "numpy", "flatbuffers"} <= allowed
  assert not allowed & {"flax", "optax", "orbax", "tensorflow", "dcrn_jax", "ml_collections"}
  rng = np.random.default_rng(0)
  expected, jobs = {}, []
  for name, (workdir, folder) in exports.items():
    p = Predictor.from_workdir(workdir)
    shape = json.loads(pathlib.Path(folder, "model.json").read_text())["input"]["shape"][1:]
    for batch in (1, 7):
      x = rng.random((batch, *shape), dtype=np.float32)
      np.save(tmp_path / f"{name}{batch}.npy", x)
      expected[f"{name}{batch}"] = p.predict_arrays(x).probabilities
      jobs.append((folder, f"{name}{batch}"))
  script = (f"import sys\nsys.path.insert(0, {str(site)!r})\n" + guide_loader() +
            "\nfor folder, key in " + repr(jobs) + ":\n"
            "  probabilities, meta = load_exported(folder)\n"
            f"  x = np.load(f'{tmp_path}/{{key}}.npy')\n"
            f"  np.save(f'{tmp_path}/{{key}}_out.npy', np.asarray(probabilities(x)))\n"
            "for name in ('flax', 'optax', 'orbax', 'tensorflow', 'dcrn_jax', 'ml_collections'):\n"
            "  try:\n"
            "    __import__(name)\n"
            "    raise SystemExit(f'{name} could be imported')\n"
            "  except ModuleNotFoundError:\n"
            "    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " - set(sys.stdlib_module_names)))\n")
  r = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True,
                     cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  imported = {m for m in ast.literal_eval(r.stdout.strip().splitlines()[-1])
              if not m.startswith("_")}
  assert imported <= allowed | {"cython_runtime"}, imported - allowed
  for key, want in expected.items():
    got = np.load(tmp_path / f"{key}_out.npy")
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.needs_tf  # TensorFlow runs the SavedModel.
def test_saved_model_gives_the_same_probabilities(image_run, tmp_path):
  from dcrn_jax.data.tf_import import tf  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  meta = export.export_workdir(image_run[0], str(tmp_path / "out"), platforms=("cpu",),
                               saved_model=True)
  assert meta["saved_model"]["signature"] == "serving_default"
  serving = tf.saved_model.load(str(tmp_path / "out" / "saved_model")).signatures[
      "serving_default"]
  p = Predictor.from_workdir(image_run[0])
  for batch in (1, 7):
    x = np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)
    got = list(serving(x=tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, p.predict_arrays(x).probabilities, atol=TOLERANCE, rtol=0)


@pytest.mark.needs_tf  # image_run reads fashion_mnist (TFDS).
def test_bad_export_requests_are_one_clear_error_and_write_nothing(image_run, tmp_path):
  out = tmp_path / "out"
  with pytest.raises(UserError, match=r"no checkpoint for step 9 .*available steps: \[1, 2\]"):
    export.export_workdir(image_run[0], str(out), step=9)
  with pytest.raises(UserError, match="--platforms=cpu,metal: choose among cpu, cuda, tpu"):
    export.export_workdir(image_run[0], str(out), platforms=("cpu", "metal"))
  assert os.listdir(tmp_path) == []
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  with pytest.raises(UserError, match="exists and is not empty.*--overwrite"):
    export.export_workdir(image_run[0], str(out), platforms=("cpu",))
  export.export_workdir(image_run[0], str(out), platforms=("cpu",), overwrite=True)
  assert sorted(os.listdir(out)) == ["model.jax", "model.json"]
  assert sorted(os.listdir(tmp_path)) == ["out"]


# cnn and cnn_gru are exported by the runs above too: their cases, and cnn_lstm's (cnn_gru's
# shape), run with -m slow.
@pytest.mark.parametrize("name, input_shape", [
    pytest.param("cnn", (12, 12, 3), marks=pytest.mark.slow), ("row_lstm", (12, 12, 1)),
    pytest.param("cnn_gru", (3, 12, 12, 1), marks=pytest.mark.slow),
    pytest.param("cnn_lstm", (3, 12, 12, 3), marks=pytest.mark.slow),
    ("convlstm", (3, 12, 12, 1))])
def test_every_model_predicts_a_file_and_exports_with_a_symbolic_batch(name, input_shape,
                                                                      tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data import files  # pylint: disable=g-import-not-at-top
  from dcrn_jax.media import video_files  # pylint: disable=g-import-not-at-top
  from dcrn_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from dcrn_jax.predict import Predictor  # pylint: disable=g-import-not-at-top
  from dcrn_jax.state import init_variables  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  m = config.model
  m.name, m.conv_features, m.embed_dim, m.hidden_size = name, (4,), 8, 8
  m.convlstm_features, m.batch_norm = (4,), name == "cnn_gru"
  model = create_model(m, num_classes=3, input_shape=input_shape)
  variables = init_variables(model, input_shape, jax.random.key(0))
  p = Predictor(model, variables, config, ("a", "b", "c"), input_shape=input_shape, batch_size=4)
  pixels = np.random.default_rng(0).integers(0, 256, (5, 14, 18, input_shape[-1]), np.uint8)
  if len(input_shape) == 4:
    video_files.write_video(str(tmp_path / "x.mkv"), pixels)
  else:
    files.write_image(str(tmp_path / "x.png"), pixels[0])
  (got,) = p.predict(str(tmp_path))
  x = p.preprocess(got.path)
  np.testing.assert_allclose(got.probabilities, p.predict_arrays(x[None]).probabilities[0],
                             atol=1e-12)
  fn = export.inference_fn(model, p.variables, input_shape, views=1)
  exported = jax.export.deserialize(
      export.export(fn, export.input_signature(input_shape, 1), ("cpu",)).serialize())
  batch = np.concatenate([x, np.random.default_rng(1).random((2, *input_shape), np.float32)])
  np.testing.assert_allclose(np.asarray(exported.call(batch)),
                             p.predict_arrays(batch).probabilities, atol=TOLERANCE, rtol=0)


def test_an_export_for_cpu_and_gpus_runs_each_platforms_own_forms():
  """convlstm's recurrence differs by platform (per step on CPU, the input convolutions of all
  steps at once on accelerators): a cpu+cuda export holds both, switched by the platform that
  compiles it; the accelerator form, run here on CPU, gives the same values."""
  import jax  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dcrn_jax.models import conv, create_model  # pylint: disable=g-import-not-at-top
  from dcrn_jax.state import init_variables  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  m = config.model
  m.name, m.conv_features, m.convlstm_features = "convlstm", (4,), (4,)
  shape = (3, 12, 12, 1)
  model = create_model(m, num_classes=3, input_shape=shape)
  variables = init_variables(model, shape, jax.random.key(0))
  signature = export.input_signature(shape, 1)

  def lowered(platforms):
    fn = export.inference_fn(model, variables, shape, 1, platforms)
    return export.export(fn, signature, platforms)

  convolutions = {p: lowered((p,)).mlir_module().count("= stablehlo.convolution(")
                  for p in ("cpu", "cuda")}
  assert convolutions == {"cpu": 2, "cuda": 3}  # Stem + one in the loop; + all steps' inputs.
  both = lowered(("cpu", "cuda"))
  text = both.mlir_module()  # One branch per form, picked by the compiling platform.
  assert both.platforms == ("cpu", "cuda") and "branch_0_fun" in text and "branch_1_fun" in text
  assert text.count("= stablehlo.convolution(") > 3
  x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
  cpu = jax.nn.softmax(model.apply(variables, x, train=False))
  np.testing.assert_allclose(jax.export.deserialize(both.serialize()).call(x), cpu,
                             atol=1e-6, rtol=0)
  with conv.forms_for("cuda"):
    assert not conv.cpu_forms()
    accelerator = jax.nn.softmax(model.apply(variables, x, train=False))
  assert conv.cpu_forms()
  np.testing.assert_allclose(accelerator, cpu, atol=1e-6, rtol=0)
