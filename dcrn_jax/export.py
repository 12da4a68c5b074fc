"""python -m dcrn_jax.export --workdir=DIR --out=OUT: the inference function, for JAX alone.

Writes OUT/ (whole, or not at all):
  model.jax    `jax.export` of  preprocessed batch -> class probabilities, serialized
               (StableHLO with the weights inside), batch dimension symbolic, lowered for
               cpu, cuda and tpu (--platforms), each in the models' forms for it
  model.json   input shape and dtype, output, class names, the preprocessing that makes inputs
               (clip sampling, resize, crop, normalisation), and where the model came from
  saved_model/ with --saved_model: the same function as a TensorFlow SavedModel (jax2tf), for
               TF Serving

Loading needs `jax` and `flatbuffers` only (jax.export.deserialize imports flatbuffers, which jax
does not require); the ten lines are in docs/guides/trained-model.md.
A forecasting run exports its forecaster instead (export_forecast.py: input frames -> predicted
frames). A classifier's function takes float32 (batch, *input_shape), or (batch, views,
*input_shape) for a video model scored on several views, and returns float32 (batch, classes):
the softmax of the model's logits, averaged over views as evaluation averages them
(dcrn_jax/evaluation.py). Its inputs are model inputs: the caller scales the pixels by the rule
model.json spells out (`input_scaling.model_input`'s: pixels / 255, then the run's
normalisation). Training, evaluation, predict and streaming scale on the device instead; the
export keeps this documented float32 contract so loaders written for earlier exports still work.
"""

import json
import os
import shutil
import sys
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp

from dcrn_jax import cli
from dcrn_jax.models import conv
from dcrn_jax.errors import UserError

FLAGS = flags.FLAGS
MODEL_FILE, META_FILE, SAVED_MODEL_DIR = "model.jax", "model.json", "saved_model"
PLATFORMS = ("cpu", "cuda", "tpu")


def model_fn(model, variables, platforms=PLATFORMS):
  """rows -> the model's float32 output (train=False), the variables closed over (constants).

  Lowered for CPU and accelerators at once, the model is traced in both its CPU and its
  accelerator forms (`conv.cpu_forms`), one chosen by the platform that compiles it.
  """
  variables = jax.device_get(variables)

  def output_in_forms_for(platform):
    def output(rows):
      with conv.forms_for(platform):
        return model.apply(variables, rows, train=False).astype(jnp.float32)
    return output

  def apply(rows):
    accelerators = [p for p in platforms if p != "cpu"]
    if "cpu" in platforms and accelerators:
      return jax.lax.platform_dependent(rows, cpu=output_in_forms_for("cpu"),
                                        default=output_in_forms_for(accelerators[0]))
    return output_in_forms_for(platforms[0])(rows)

  return apply


def inference_fn(model, variables, input_shape, views: int, platforms=PLATFORMS):
  """x float32 (b, *input_shape), or (b, views, *input_shape) when views > 1 -> float32
  (b, classes) probabilities, views averaged (`model_fn`'s forms)."""
  logits_fn = model_fn(model, variables, platforms)

  def probabilities(x):
    logits = logits_fn(x.reshape((-1, *input_shape)))
    p = jnp.exp(jax.nn.log_softmax(logits))  # What evaluation averages.
    return p.reshape((x.shape[0], views, p.shape[-1])).mean(axis=1) if views > 1 else p

  return probabilities


def input_signature(input_shape, views: int) -> tuple:
  """The shape of the function's input, 'batch' for the symbolic batch dimension."""
  return ("batch",) + ((views,) if views > 1 else ()) + tuple(input_shape)


def export(fn, signature, platforms=PLATFORMS):
  """jax.export.Exported of fn for float32 inputs of `signature` (its 'batch' symbolic)."""
  batch, = jax.export.symbolic_shape("batch")
  shape = tuple(batch if d == "batch" else d for d in signature)
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(
      jax.ShapeDtypeStruct(shape, jnp.float32))


def _preprocessing(predictor, spec) -> dict:
  d = predictor.config.data
  stats = {"scale": "pixels / 255 (uint8 -> [0, 1])",
           "normalize_mean": list(d.normalize_mean), "normalize_std": list(d.normalize_std),
           "channels": {1: "grey", 3: "RGB"}.get(predictor.input_shape[-1])}
  if spec is None:
    return {"kind": None, **stats}
  if spec.clip is None:
    h, w = predictor.input_shape[:2]
    return {"kind": "image", "how": f"resize (aspect kept) so the shorter side is {max(h, w)}, "
            f"centre crop {h}x{w}, then scale and normalise", **stats}
  c = spec.clip
  return {"kind": "video", "num_frames": c.num_frames, "frame_stride": c.stride,
          "resize_short": c.resize_short, "crop_size": c.size, "num_test_clips":
          c.num_test_clips, "num_test_crops": c.num_test_crops, "views": c.views,
          "how": "views: num_test_clips evenly spaced clips (first at the start, last at the "
                 "end) x num_test_crops square crops (1: centre; 3: both ends and centre of the "
                 "longer side) of frames resized so the shorter side is resize_short; a short "
                 "video repeats its last frame; then scale and normalise", **stats}


def loader_metadata(exported) -> dict:
  """The part of model.json that says how to load model.jax (any task)."""
  return {"format": "jax.export", "file": MODEL_FILE, "jax_version": jax.__version__,
          "load_requires": ["jax", "flatbuffers"],
          "calling_convention_version": exported.calling_convention_version,
          "platforms": list(exported.platforms)}


def metadata(predictor, exported, signature, workdir: str) -> dict:
  """The sidecar JSON: everything needed to feed the exported function and read its output."""
  from dcrn_jax.data import files as data_files  # pylint: disable=g-import-not-at-top
  try:
    spec = data_files.file_spec(predictor.config.data, predictor.input_shape)
  except UserError:
    spec = None  # Inputs no file gives: the caller makes them.
  return {
      **loader_metadata(exported),
      "input": {"shape": list(signature), "dtype": "float32",
                "layout": "channels-last; 'batch' is any size"
                          + ("; axis 1: a video's views" if len(signature) >
                             len(predictor.input_shape) + 1 else "")},
      "output": {"shape": ["batch", len(predictor.class_names)], "dtype": "float32",
                 "meaning": "class probabilities (softmax), averaged over views"},
      "class_names": list(predictor.class_names),
      "preprocessing": _preprocessing(predictor, spec),
      "source": {"workdir": os.path.abspath(workdir), "step": predictor.step,
                 "model": predictor.config.model.to_dict(), "data": predictor.config.data.name},
  }


def write_saved_model(fn, signature, folder: str, platforms=PLATFORMS) -> None:
  """The function as a TF SavedModel, signature 'serving_default' taking 'x' with a dynamic
  batch dimension. jax2tf wraps the same StableHLO (an XlaCallModule op): TF Serving and
  TensorFlow run it; TFLite does not. Imports TensorFlow (through the data room)."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data.tf_import import tf  # pylint: disable=g-import-not-at-top
  converted = jax2tf.convert(fn, polymorphic_shapes=["(b, ...)"], with_gradient=False,
                             native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.f = tf.function(converted, autograph=False, input_signature=[
      tf.TensorSpec([None, *signature[1:]], tf.float32, name="x")])
  tf.saved_model.save(module, folder, signatures={"serving_default": module.f})


def _replace_folder(tmp: str, out: str) -> None:
  """Puts the finished folder tmp at out (replacing an old export there)."""
  old = None
  if os.path.exists(out):
    old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(out) or ".")
    os.rmdir(old)
    os.replace(out, old)
  os.replace(tmp, out)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def export_workdir(workdir: str, out: str, *, step=None, platforms=PLATFORMS,
                   saved_model: bool = False, overwrite: bool = False,
                   stream: bool = False) -> dict:
  """Exports a run's checkpoint to the folder `out` (module docstring; with `stream`, the
  per-frame step of export_stream.py); returns the metadata."""
  if stream and saved_model:
    raise UserError("--stream and --saved_model: the per-frame step is exported for JAX only")
  out = os.path.abspath(out)
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
    raise UserError(f"--out={out} exists and is not empty; choose a new folder, or pass "
                    "--overwrite to replace it")
  unknown = sorted(set(platforms) - set(PLATFORMS))
  if unknown or not platforms:
    raise UserError(f"--platforms={','.join(platforms)}: choose among {', '.join(PLATFORMS)}")
  from dcrn_jax import export_forecast, predict  # pylint: disable=g-import-not-at-top
  p = predict.Predictor.from_workdir(workdir, step)
  if stream:
    from dcrn_jax import export_stream  # pylint: disable=g-import-not-at-top
    if not hasattr(p, "stream"):
      raise UserError(f"{workdir} holds a forecasting run: --stream exports a classifier's "
                      "per-frame step")
    p.stream()  # Refuses, in one line, a model that cannot run one frame at a time.
    exported, stream_meta = export_stream.export_step(p, platforms)
  elif export_forecast.serves(p):
    fn, signature = export_forecast.forecast_fn(p, platforms)
    describe = export_forecast.metadata
  else:
    try:
      views = p.views
    except UserError:
      views = 1
    signature = input_signature(p.input_shape, views)
    fn = inference_fn(p.model, p.variables, p.input_shape, views, platforms)
    describe = metadata
  if not stream:
    exported = export(fn, signature, platforms)
  parent = os.path.dirname(out)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; an export is not.
  except OSError as e:
    raise UserError(f"cannot write to {parent} ({e.strerror}); choose a writable --out") from e
  try:
    if stream:
      meta = export_stream.write(p, exported, stream_meta, workdir, tmp)
      with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
      _replace_folder(tmp, out)
      return meta
    with open(os.path.join(tmp, MODEL_FILE), "wb") as f:
      f.write(exported.serialize())
    meta = describe(p, exported, signature, workdir)
    if saved_model:
      write_saved_model(fn, signature, os.path.join(tmp, SAVED_MODEL_DIR), platforms)
      meta["saved_model"] = {"dir": SAVED_MODEL_DIR, "signature": "serving_default",
                             "input": "x"}
    with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=1)
    _replace_folder(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return meta


def define_flags():
  flags.DEFINE_string("workdir", None, "The workdir of a training run.")
  flags.DEFINE_string("out", None, "Folder to write model.jax and model.json into.")
  flags.DEFINE_string("step", "latest",
                      "Checkpoint to export: latest, best (by the run's best_metric), or a step "
                      "number.")
  flags.DEFINE_list("platforms", list(PLATFORMS), "Platforms to lower for (cpu, cuda, tpu).")
  flags.DEFINE_bool("saved_model", False,
                    "Also write a TensorFlow SavedModel (jax2tf) into OUT/saved_model.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out folder.")
  flags.DEFINE_bool("stream", False,
                    "Export the per-frame step (frame, carry) -> (probabilities, carry) of a "
                    "recurrent clip model instead of the whole-clip function.")
  flags.DEFINE_bool("verbose", False, "Show library logs and warnings, and tracebacks.")
  flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_libraries(FLAGS.verbose)
  with cli.user_errors(FLAGS.verbose):
    meta = export_workdir(FLAGS.workdir, FLAGS.out, step=FLAGS.step,
                          platforms=tuple(FLAGS.platforms), saved_model=FLAGS.saved_model,
                          overwrite=FLAGS.overwrite, stream=FLAGS.stream)
    if FLAGS.stream:
      print(f"exported the per-frame step of step {meta['source']['step']} of {FLAGS.workdir} "
            f"to {FLAGS.out}: frame {meta['input']['frame']['shape']} and a carry of "
            f"{len(meta['input']['carry'])} array(s) -> probabilities of "
            f"{len(meta['class_names'])} classes", file=sys.stderr)
      return
    output = (f"predicted frames {meta['output']['shape']}" if "class_names" not in meta else
              f"probabilities of {len(meta['class_names'])} classes")
    print(f"exported step {meta['source']['step']} of {FLAGS.workdir} to {FLAGS.out}: input "
          f"{meta['input']['shape']} float32 -> {output}, for {', '.join(meta['platforms'])}"
          + ("; SavedModel in saved_model/" if FLAGS.saved_model else ""), file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_plain_flags)
