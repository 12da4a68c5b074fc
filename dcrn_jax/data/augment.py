"""Image augmentation in tf.data, and the checks of the normalisation fields.

Training images may get, in this order: zero padding by `augment_crop_padding` px on each side
and a random crop back to the original size, a random horizontal flip (`augment_flip`), and a
random rotation of up to `augment_rotation_degrees` either way. Eval images get none of it.
Per-channel normalisation (`normalize_mean`, `normalize_std`) applies to train and eval alike
(a model must see the same input scale in both), on the device: dcrn_jax/input_scaling.py.

Every random choice is a stateless op of the example's seed (derived from config.seed, the epoch
and the example's place in it), so a resumed run augments each example exactly as before.
"""

import math

from dcrn_jax.data.tf_import import tf
from dcrn_jax.errors import UserError


def check(data_config, channels: int) -> None:
  """UserError for augmentation/normalisation fields that cannot apply to `channels` channels."""
  d = data_config
  if d.augment_crop_padding < 0:
    raise UserError(f"data.augment_crop_padding is {d.augment_crop_padding}; use 0 (off) or more.")
  if not 0 <= d.augment_rotation_degrees <= 180:
    raise UserError(f"data.augment_rotation_degrees is {d.augment_rotation_degrees}; use a "
                    "maximum angle in [0, 180] (0: off; small angles such as 10 are typical).")
  mean, std = tuple(d.normalize_mean), tuple(d.normalize_std)
  if len(mean) != len(std) or (mean and len(mean) not in (1, channels)):
    raise UserError(
        f"data.normalize_mean {mean} and data.normalize_std {std} must both be empty (no "
        f"normalisation) or both hold 1 or {channels} values (one per channel).")
  if any(s <= 0 for s in std):
    raise UserError(f"data.normalize_std {std} must be positive.")


def is_active(data_config) -> bool:
  """True if any random training augmentation is switched on."""
  d = data_config
  return bool(d.augment_crop_padding or d.augment_flip or d.augment_rotation_degrees)


def _rotate(image, angle):
  """image float32 (H, W, C) rotated by `angle` radians about its centre, zeros outside."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  cy, cx = (tf.cast(h, tf.float32) - 1) / 2, (tf.cast(w, tf.float32) - 1) / 2
  cos, sin = tf.cos(angle), tf.sin(angle)
  # The op maps each output pixel (x, y) back to the input point it samples: a rotation by
  # -angle about the centre, so the picture turns by +angle (counter-clockwise on screen).
  transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                        sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform, output_shape=tf.stack([h, w]),
      fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
  return out[0]


def train_augment(image, seed, data_config):
  """One training image (H, W, C) -> the augmented image, of the same dtype.

  Crop and flip move pixels and keep them exact; a rotation interpolates, and rounds back to
  whole pixels for uint8 images.

  Args:
    image: the decoded image, uint8 pixels (or float32 in [0, 1]).
    seed: int64 (2,), the example's stateless seed.
    data_config: the `data` config (augment_* fields).
  """
  d = data_config
  seeds = tf.random.experimental.stateless_split(seed, 3)
  shape = image.shape
  if d.augment_crop_padding:
    p = d.augment_crop_padding
    padded = tf.pad(image, [[p, p], [p, p], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=seeds[0])
  if d.augment_flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
  if d.augment_rotation_degrees:
    limit = d.augment_rotation_degrees * math.pi / 180
    angle = tf.random.stateless_uniform([], seed=seeds[2], minval=-limit, maxval=limit)
    if image.dtype == tf.uint8:
      image = tf.saturate_cast(tf.round(_rotate(tf.cast(image, tf.float32), angle)), tf.uint8)
    else:
      image = _rotate(image, angle)
  return tf.ensure_shape(image, shape)
