"""CNN encoders: one image (N, H, W, C) -> feature vector (N, D), and the same for every frame.

Convolutions and pooling are `models.conv`'s (nn.Conv/nn.max_pool values, faster gradients on CPU).
Every field is keyword-only: `ImageEncoder(features=(16, 32), embed_dim=128)`."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dcrn_jax.models.conv import Conv, max_pool


class ConvBlocks(nn.Module, kw_only=True):
  """Blocks of [3x3 conv -> (batch norm) -> ReLU] x convs_per_block -> 2x2 max-pool.

  (N, H, W, C) -> (N, H / 2**len(features), W / 2**len(features), features[-1]).
  """

  features: Sequence[int]
  convs_per_block: int = 1
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    for block, feats in enumerate(self.features):
      for i in range(self.convs_per_block):
        x = Conv(feats, (3, 3), use_bias=not self.batch_norm, dtype=self.dtype,
                 name=f"conv{block}_{i}")(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                           name=f"bn{block}_{i}")(x)
        x = nn.relu(x)
      x = max_pool(x, 2)
    return x


class ImageEncoder(nn.Module, kw_only=True):
  """(N, H, W, C) -> (N, D): [patchify stem], conv blocks, then flatten + dense to `embed_dim`.

  stem_stride=s > 1 starts with an s x s conv of stride s (features[0] channels) and runs the
  blocks on features[1:]: on large frames this cuts the encoder's cost by about s**2.
  Flattening (rather than global pooling) keeps where things are in the frame, which a
  recurrence over frames needs to see motion. embed_dim=0 returns the globally pooled map.
  """

  features: Sequence[int]
  convs_per_block: int = 1
  embed_dim: int = 128
  batch_norm: bool = False
  stem_stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = tuple(self.features)
    if self.stem_stride > 1:
      s = self.stem_stride
      x = nn.relu(Conv(features[0], (s, s), strides=(s, s), dtype=self.dtype, name="stem")(x))
      features = features[1:]
    x = ConvBlocks(features=features, convs_per_block=self.convs_per_block,
                   batch_norm=self.batch_norm, dtype=self.dtype, name="blocks")(x, train=train)
    if self.embed_dim <= 0:
      return jnp.mean(x, axis=(1, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.embed_dim, dtype=self.dtype, name="embed")(x))


class FrameEncoder(nn.Module, kw_only=True):
  """Applies one image encoder `cnn` (e.g. an ImageEncoder, given unbound) to every frame:
  (B, T, H, W, C) -> (B, T, D). Its parameters live under `cnn`.

  All B*T frames go through the CNN as one batch (no loop over time), so the convolutions run
  as large batched ops and batch-norm statistics are taken over every frame.
  """

  cnn: nn.Module

  @nn.compact
  def __call__(self, clips, *, train: bool):
    b, t = clips.shape[:2]
    frames = clips.reshape((b * t,) + clips.shape[2:])
    return self.cnn(frames, train=train).reshape(b, t, -1)
