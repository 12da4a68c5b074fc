"""The classifiers named by `config.model.name`, and `create_model` to build one from a config.

Every model maps inputs to float32 logits (B, num_classes) and takes `train` (dropout on, batch
norm updating its statistics) as a keyword. Clips are (B, T, H, W, C); images are (B, H, W, C).
Every field is keyword-only. Recurrent layers are stacked with `Stack`; they are created in the
classifier's own compact method, so their parameters sit at `gru0`, `convlstm1`, ... (the paths of
earlier checkpoints).
"""

import dataclasses
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from dcrn_jax.errors import UserError
from dcrn_jax.models.conv import Conv
from dcrn_jax.models.encoders import FrameEncoder, ImageEncoder
from dcrn_jax.models.forecasters import ConvLSTMAutoregressive, ConvLSTMForecaster
from dcrn_jax.models.predrnn import PredRNN
from dcrn_jax.models.recurrent import GRU, LSTM, ConvLSTM, Stack


class Head(nn.Module, kw_only=True):
  """(B, D) -> logits (B, num_classes): dropout, optional hidden ReLU layer, dense."""

  num_classes: int
  hidden: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.hidden > 0:
      x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x).astype(jnp.float32)


def _image_encoder(model: nn.Module, **kwargs) -> ImageEncoder:
  """The ImageEncoder described by a classifier's conv_features, convs_per_block, embed_dim,
  batch_norm, stem_stride and dtype."""
  return ImageEncoder(features=model.conv_features, convs_per_block=model.convs_per_block,
                      embed_dim=model.embed_dim, batch_norm=model.batch_norm,
                      stem_stride=model.stem_stride, dtype=model.dtype, **kwargs)


def _head(model: nn.Module) -> Head:
  return Head(num_classes=model.num_classes, hidden=model.head_hidden, dropout=model.dropout,
              dtype=model.dtype, name="head")


def _stack(layers: Sequence[nn.Module], x, *, dropout: float, train: bool, initial_carry=None):
  """Dropout, then the layers (created with return_carry=True by the calling module) one after
  another with dropout between them -> (their final carries, the last layer's outputs); the
  layers start from `initial_carry` (one per layer) or zeros."""
  drop = lambda: nn.Dropout(dropout, deterministic=not train)
  x = drop()(x)
  return Stack(layers=layers, between=[drop() for _ in layers[1:]], return_carry=True)(
      x, initial_carry)


class CNNClassifier(nn.Module, kw_only=True):
  """Image baseline: conv/pool blocks -> flatten + dense -> head. (B, H, W, C) -> (B, classes)."""

  num_classes: int
  conv_features: Sequence[int] = (32, 64, 128)
  convs_per_block: int = 1
  embed_dim: int = 256
  stem_stride: int = 1
  head_hidden: int = 0
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    x = _image_encoder(self, name="encoder")(images.astype(self.dtype), train=train)
    return _head(self)(x, train=train)


class FrameRNNClassifier(nn.Module, kw_only=True):
  """CNN frame encoder + stacked GRU/LSTM over time (CNN+GRU, CNN+LSTM, the LRCN family).

  (B, T, H, W, C) -> per-frame features (B, T, D) -> recurrence -> last step -> head.
  """

  num_classes: int
  cell: str = "gru"  # gru or lstm
  conv_features: Sequence[int] = (16, 32, 64)
  convs_per_block: int = 1
  embed_dim: int = 128
  stem_stride: int = 1
  hidden_size: int = 128
  num_layers: int = 1
  head_hidden: int = 0
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, clips, *, train: bool = False, initial_carry=None,
               return_carry: bool = False):
    # Unbound (parent=None), so that the FrameEncoder adopts it: parameters at encoder/cnn/...
    cnn = _image_encoder(self, parent=None)
    x = FrameEncoder(cnn=cnn, name="encoder")(clips.astype(self.dtype), train=train)
    layer = GRU if self.cell == "gru" else LSTM
    layers = [layer(self.hidden_size, return_carry=True, dtype=self.dtype, name=f"{self.cell}{i}")
              for i in range(self.num_layers)]
    carry, x = _stack(layers, x, dropout=self.dropout, train=train, initial_carry=initial_carry)
    logits = _head(self)(x[:, -1], train=train)
    return (carry, logits) if return_carry else logits


class ConvLSTMClassifier(nn.Module, kw_only=True):
  """Stacked ConvLSTM: a strided conv stem per frame, ConvLSTM layers, then pool + head.

  (B, T, H, W, C) -> stem (B, T, H/s, W/s, F0) -> ConvLSTM x L -> last step's map, globally
  averaged -> head. The stem shrinks frames so the recurrent convolutions stay affordable.
  """

  num_classes: int
  convlstm_features: Sequence[int] = (32, 32)
  kernel_size: int = 3
  stem_stride: int = 2
  head_hidden: int = 0
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, clips, *, train: bool = False, initial_carry=None,
               return_carry: bool = False):
    b, t = clips.shape[:2]
    x = clips.astype(self.dtype).reshape((b * t,) + clips.shape[2:])
    s = self.stem_stride
    k = max(3, s)  # Never a kernel smaller than its stride: every pixel is seen.
    x = Conv(self.convlstm_features[0], (k, k), strides=(s, s), use_bias=not self.batch_norm,
             dtype=self.dtype, name="stem")(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       name="stem_bn")(x)
    x = nn.relu(x)
    x = x.reshape((b, t) + x.shape[1:])
    layers = [ConvLSTM(feats, self.kernel_size, return_carry=True, dtype=self.dtype,
                       name=f"convlstm{i}") for i, feats in enumerate(self.convlstm_features)]
    carry, x = Stack(layers=layers, return_carry=True)(x, initial_carry)
    x = jnp.mean(x[:, -1], axis=(1, 2))
    logits = _head(self)(x, train=train)
    return (carry, logits) if return_carry else logits


class RowLSTMClassifier(nn.Module, kw_only=True):
  """Reads an image as a sequence of rows: (B, H, W, C) -> H steps of W*C -> LSTM -> head."""

  num_classes: int
  hidden_size: int = 128
  num_layers: int = 1
  head_hidden: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    b, h = images.shape[:2]
    x = images.astype(self.dtype).reshape(b, h, -1)
    layers = [LSTM(self.hidden_size, return_carry=True, dtype=self.dtype, name=f"lstm{i}")
              for i in range(self.num_layers)]
    _, x = _stack(layers, x, dropout=self.dropout, train=train)
    return _head(self)(x[:, -1], train=train)


@dataclasses.dataclass(frozen=True)
class _Entry:
  model: type
  rank: int  # of one example: 4 for clips (T, H, W, C), 3 for images (H, W, C)
  fields: Tuple[str, ...]  # config.model fields passed on as keywords (renamed by _KEYWORDS)
  fixed: Tuple[Tuple[str, Any], ...] = ()  # keywords that the name itself sets
  task: str = "classify"  # or "forecast": frames in, frames out (forecasters.py)
  # (kwargs, input_shape, num_classes, output_frames) -> the model; classifiers by default.
  build: Any = None


def _forecaster(entry, kwargs, input_shape, num_classes, output_frames, m):
  """A forecaster of `output_frames` frames (its features keyword is convlstm_features)."""
  del num_classes
  if m.patch_size < 1 or input_shape[1] % m.patch_size or input_shape[2] % m.patch_size:
    raise UserError(f"model.patch_size={m.patch_size} must be >= 1 and divide the frame size "
                    f"{input_shape[1]}x{input_shape[2]}")
  kwargs["features"] = kwargs.pop("convlstm_features")
  if entry.model is PredRNN and len(set(kwargs["features"])) != 1:
    raise UserError(f"model.name={m.name!r} needs equal model.convlstm_features (its memory M "
                    f"passes between layers), got {kwargs['features']}")
  return entry.model(output_frames=output_frames, **dict(entry.fixed), **kwargs)


def _classifier(entry, kwargs, input_shape, num_classes, output_frames, m):
  """A classifier of `num_classes` classes."""
  del input_shape, output_frames, m
  return entry.model(num_classes=num_classes, **dict(entry.fixed), **kwargs)


_ENCODER = ("conv_features", "convs_per_block", "embed_dim", "stem_stride", "batch_norm")
_HEAD = ("head_hidden", "dropout", "dtype")
_FORECASTER = ("convlstm_features", "convlstm_kernel", "patch_size", "dtype")
# config.model.name -> how create_model builds it; the one place config fields become keywords.
MODELS = {
    "cnn": _Entry(CNNClassifier, 3, _ENCODER + _HEAD),
    "cnn_gru": _Entry(FrameRNNClassifier, 4, _ENCODER + ("hidden_size", "num_layers") + _HEAD,
                      (("cell", "gru"),)),
    "cnn_lstm": _Entry(FrameRNNClassifier, 4, _ENCODER + ("hidden_size", "num_layers") + _HEAD,
                       (("cell", "lstm"),)),
    "convlstm": _Entry(ConvLSTMClassifier, 4, ("convlstm_features", "convlstm_kernel",
                                               "stem_stride", "batch_norm") + _HEAD),
    "row_lstm": _Entry(RowLSTMClassifier, 3, ("hidden_size", "num_layers") + _HEAD),
    "convlstm_forecaster": _Entry(ConvLSTMForecaster, 4, _FORECASTER, task="forecast",
                  build=_forecaster),
    "convlstm_autoregressive": _Entry(ConvLSTMAutoregressive, 4, _FORECASTER, task="forecast",
                  build=_forecaster),
    "predrnn": _Entry(PredRNN, 4, _FORECASTER, (("cell", "st_lstm"),), task="forecast",
                  build=_forecaster),
    "predrnn_v2": _Entry(PredRNN, 4, _FORECASTER + ("decouple_beta",), (("cell", "st_lstm"),),
                         task="forecast", build=_forecaster),
    "predrnn_pp": _Entry(PredRNN, 4, _FORECASTER, (("cell", "causal_lstm"),), task="forecast",
                  build=_forecaster),
}
_KEYWORDS = {"convlstm_kernel": "kernel_size"}  # config field -> keyword, where they differ
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_task(name: str) -> str:
  """'classify' or 'forecast': what the model named `name` does (UserError if unknown)."""
  if name not in MODELS:
    raise UserError(f"unknown model.name={name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name].task


def create_model(model_config, *, num_classes: int, input_shape: Sequence[int],
                 output_frames: int = 0) -> nn.Module:
  """Builds the model named by `model_config.name` for examples of `input_shape` (no batch);
  a forecaster predicts `output_frames` frames."""
  m = model_config
  model_task(m.name)  # Checks the name.
  entry = MODELS[m.name]
  if len(input_shape) != entry.rank:
    kind = "clips (T, H, W, C)" if entry.rank == 4 else "images (H, W, C)"
    raise UserError(f"model.name={m.name!r} takes {kind} but the dataset gives examples of shape "
                    f"{tuple(input_shape)}; pick a model for this data or a dataset for this model")
  if m.dtype not in _DTYPES:
    raise UserError(f"unknown model.dtype={m.dtype!r}; choose one of {sorted(_DTYPES)}")
  if m.stem_stride < 1:
    raise UserError(f"model.stem_stride={m.stem_stride} must be >= 1")
  if not 0.0 <= m.dropout < 1.0:
    raise UserError(f"model.dropout={m.dropout} must be in [0, 1)")
  kwargs = {_KEYWORDS.get(f, f): tuple(m[f]) if isinstance(m[f], (list, tuple)) else m[f]
            for f in entry.fields}
  kwargs["dtype"] = _DTYPES[m.dtype]
  return (entry.build or _classifier)(entry, kwargs, input_shape, num_classes, output_frames, m)
