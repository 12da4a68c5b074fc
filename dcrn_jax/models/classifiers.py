"""The classifiers named by `config.model.name`, and `create_model` to build one from a config.

Every model maps inputs to float32 logits (B, num_classes) and takes `train` (dropout on, batch
norm updating its statistics) as a keyword. Clips are (B, T, H, W, C); images are (B, H, W, C).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dcrn_jax.errors import UserError
from dcrn_jax.models.conv import Conv
from dcrn_jax.models.encoders import ConvBlocks, FrameEncoder, ImageEncoder
from dcrn_jax.models.recurrent import GRU, LSTM, ConvLSTM


class Head(nn.Module):
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


class CNNClassifier(nn.Module):
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
    x = ImageEncoder(self.conv_features, self.convs_per_block, self.embed_dim, self.batch_norm,
                     self.stem_stride, self.dtype, name="encoder")(images.astype(self.dtype),
                                                                   train=train)
    return Head(self.num_classes, self.head_hidden, self.dropout, self.dtype,
                name="head")(x, train=train)


def _recurrent_layer(cell: str, hidden_size: int, dtype: Any, name: str) -> nn.Module:
  if cell == "gru":
    return GRU(hidden_size, dtype=dtype, name=name)
  return LSTM(hidden_size, dtype=dtype, name=name)


class FrameRNNClassifier(nn.Module):
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
  def __call__(self, clips, *, train: bool = False):
    x = FrameEncoder(self.conv_features, self.convs_per_block, self.embed_dim, self.batch_norm,
                     self.stem_stride, self.dtype, name="encoder")(clips.astype(self.dtype),
                                                                   train=train)
    for i in range(self.num_layers):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = _recurrent_layer(self.cell, self.hidden_size, self.dtype, f"{self.cell}{i}")(x)
    return Head(self.num_classes, self.head_hidden, self.dropout, self.dtype,
                name="head")(x[:, -1], train=train)


class ConvLSTMClassifier(nn.Module):
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
  def __call__(self, clips, *, train: bool = False):
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
    for i, feats in enumerate(self.convlstm_features):
      x = ConvLSTM(feats, self.kernel_size, dtype=self.dtype, name=f"convlstm{i}")(x)
    x = jnp.mean(x[:, -1], axis=(1, 2))
    return Head(self.num_classes, self.head_hidden, self.dropout, self.dtype,
                name="head")(x, train=train)


class RowLSTMClassifier(nn.Module):
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
    for i in range(self.num_layers):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = LSTM(self.hidden_size, dtype=self.dtype, name=f"lstm{i}")(x)
    return Head(self.num_classes, self.head_hidden, self.dropout, self.dtype,
                name="head")(x[:, -1], train=train)


# name -> (example rank it expects: 4 for clips (T, H, W, C), 3 for images (H, W, C)).
MODEL_INPUT_RANK = {"cnn": 3, "row_lstm": 3, "cnn_gru": 4, "cnn_lstm": 4, "convlstm": 4}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(model_config, *, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
  """Builds the model named by `model_config.name` for examples of `input_shape` (no batch)."""
  name = model_config.name
  if name not in MODEL_INPUT_RANK:
    raise UserError(f"unknown model.name={name!r}; choose one of {sorted(MODEL_INPUT_RANK)}")
  if len(input_shape) != MODEL_INPUT_RANK[name]:
    kind = "clips (T, H, W, C)" if MODEL_INPUT_RANK[name] == 4 else "images (H, W, C)"
    raise UserError(f"model.name={name!r} takes {kind} but the dataset gives examples of shape "
                    f"{tuple(input_shape)}; pick a model for this data or a dataset for this model")
  if model_config.dtype not in _DTYPES:
    raise UserError(f"unknown model.dtype={model_config.dtype!r}; choose one of {sorted(_DTYPES)}")
  if model_config.stem_stride < 1:
    raise UserError(f"model.stem_stride={model_config.stem_stride} must be >= 1")
  if not 0.0 <= model_config.dropout < 1.0:
    raise UserError(f"model.dropout={model_config.dropout} must be in [0, 1)")
  m = model_config
  common = dict(num_classes=num_classes, head_hidden=m.head_hidden, dropout=m.dropout,
                dtype=_DTYPES[m.dtype])
  if name == "cnn":
    return CNNClassifier(conv_features=tuple(m.conv_features), convs_per_block=m.convs_per_block,
                         embed_dim=m.embed_dim, stem_stride=m.stem_stride,
                         batch_norm=m.batch_norm, **common)
  if name in ("cnn_gru", "cnn_lstm"):
    return FrameRNNClassifier(cell=name[4:], conv_features=tuple(m.conv_features),
                              convs_per_block=m.convs_per_block, embed_dim=m.embed_dim,
                              stem_stride=m.stem_stride, hidden_size=m.hidden_size,
                              num_layers=m.num_layers,
                              batch_norm=m.batch_norm, **common)
  if name == "convlstm":
    return ConvLSTMClassifier(convlstm_features=tuple(m.convlstm_features),
                              kernel_size=m.convlstm_kernel, stem_stride=m.stem_stride,
                              batch_norm=m.batch_norm, **common)
  return RowLSTMClassifier(hidden_size=m.hidden_size, num_layers=m.num_layers, **common)
