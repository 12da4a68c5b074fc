"""python -m dcrn_jax.export --workdir=DIR --out=OUT --stream: the per-frame step, for JAX alone.

Writes OUT/ (whole, or not at all):
  model.jax    `jax.export` of  (frame, *carry) -> (probabilities, *carry'), serialized with the
               weights inside, the batch of streams symbolic: frame float32 (batch, S, S, C),
               one preprocessed frame per stream; carry the model's state, a flat list of arrays
               (zeros before the first frame); probabilities float32 (batch, classes) after
               that frame (`models/streaming.py`: those of the clip of every frame so far).
  model.json   the carry's shapes and dtypes, the frame's preprocessing, class names, source.

The loader (docs/guides/real-time.md) needs `jax` and `flatbuffers` only, as export.py's.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from dcrn_jax import export as export_lib
from dcrn_jax.models import conv, streaming


def step_fn(model, variables, carry_tree, platforms):
  """(frame, *carry leaves) -> (probabilities, *carry leaves): one frame of every stream."""
  variables = jax.device_get(variables)
  step = streaming.make_step(model)

  def in_forms_for(platform):
    def run(frame, leaves):
      with conv.forms_for(platform):
        carry, logits = step(variables, jax.tree.unflatten(carry_tree, leaves), frame)
      return jax.tree.leaves(carry), logits.astype(jnp.float32)
    return run

  def fn(frame, *leaves):
    accelerators = [p for p in platforms if p != "cpu"]
    if "cpu" in platforms and accelerators:
      carry, logits = jax.lax.platform_dependent(
          frame, list(leaves), cpu=in_forms_for("cpu"), default=in_forms_for(accelerators[0]))
    else:
      carry, logits = in_forms_for(platforms[0])(frame, list(leaves))
    return (jnp.exp(jax.nn.log_softmax(logits)), *carry)

  return fn


def export_step(predictor, platforms=export_lib.PLATFORMS):
  """(jax.export.Exported, metadata additions) of a predictor's per-frame step."""
  spec = predictor.file_spec
  frame_shape = tuple(predictor.input_shape[1:])
  shapes = streaming.carry_shapes(predictor.model, predictor.variables, 1, frame_shape)
  leaves, tree = jax.tree.flatten(shapes)
  fn = step_fn(predictor.model, predictor.variables, tree, platforms)
  batch, = jax.export.symbolic_shape("batch")
  args = [jax.ShapeDtypeStruct((batch,) + frame_shape, jnp.float32)]
  args += [jax.ShapeDtypeStruct((batch,) + s.shape[1:], s.dtype) for s in leaves]
  exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*args)
  c = spec.clip
  meta = {
      "kind": "stream",
      "input": {"frame": {"shape": ["batch", *frame_shape], "dtype": "float32"},
                "carry": [{"shape": ["batch", *s.shape[1:]], "dtype": str(np.dtype(s.dtype))}
                          for s in leaves],
                "call": "model.call(frame, *carry) -> (probabilities, *carry); carry starts "
                        "as zeros"},
      "output": {"shape": ["batch", len(predictor.class_names)], "dtype": "float32",
                 "meaning": "class probabilities after this frame, from the clip of every frame "
                            "since the carry was zero"},
      "clip_frames": predictor.input_shape[0],
      "frame_preprocessing": {
          "resize_short": c.resize_short, "crop_size": c.size,
          "scale": "pixels / 255 (uint8 -> [0, 1])",
          "normalize_mean": list(predictor.config.data.normalize_mean),
          "normalize_std": list(predictor.config.data.normalize_std),
          "channels": {1: "grey", 3: "RGB"}[predictor.input_shape[-1]],
          "how": "resize (aspect kept) so the shorter side is resize_short, centre crop "
                 "crop_size x crop_size, then (x / 255 - mean) / std"},
  }
  return exported, meta


def export_stream_workdir(workdir: str, out: str, *, step=None,
                          platforms=export_lib.PLATFORMS, overwrite: bool = False) -> dict:
  """Exports a run's per-frame step to the folder `out` (module docstring); returns the
  metadata. UserError for a model that cannot stream."""
  return export_lib.export_workdir(workdir, out, step=step, platforms=platforms,
                                   overwrite=overwrite, stream=True)


def write(predictor, exported, meta_extra, workdir, tmp) -> dict:
  """Writes model.jax and returns model.json's content."""
  with open(os.path.join(tmp, export_lib.MODEL_FILE), "wb") as f:
    f.write(exported.serialize())
  return {"format": "jax.export", "file": export_lib.MODEL_FILE, "jax_version": jax.__version__,
          "load_requires": ["jax", "flatbuffers"],
          "calling_convention_version": exported.calling_convention_version,
          "platforms": list(exported.platforms), "class_names": list(predictor.class_names),
          **meta_extra,
          "source": {"workdir": os.path.abspath(workdir), "step": predictor.step,
                     "model": predictor.config.model.to_dict(),
                     "data": predictor.config.data.name}}
