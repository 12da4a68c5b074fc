"""What the train loop needs to know about a dataset before reading it (no TensorFlow here)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about one dataset as configured by a `data` config.

  Attributes:
    num_classes: labels are ints in [0, num_classes).
    input_shape: one example, channels-last: (T, H, W, C) for clips, (H, W, C) for images.
    num_train_examples: size of `data.train_split`, all processes together.
    num_eval_examples: size of `data.eval_split`, all processes together.
    class_names: num_classes human-readable names, indexed by label.
    eval_views: rows per eval example. 1 for images and stored clips; for videos the
      num_test_clips x num_test_crops views of each video, consecutive rows sharing the
      example's 'example_id', whose scores are averaged.
    eval_ids: a human-readable id per eval example, indexed by 'example_id' (video_folder: the
      file path); empty when the integer index is the id (TFDS datasets, synthetic).
  """

  num_classes: int
  input_shape: tuple[int, ...]
  num_train_examples: int
  num_eval_examples: int
  class_names: tuple[str, ...]
  eval_views: int = 1
  eval_ids: tuple[str, ...] = ()
