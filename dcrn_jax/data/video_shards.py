"""Reading prepared video shards (data.video_cache=True): only the frames a clip needs.

The shards (dcrn_jax/datasets/video_shards/) hold a video's frames in consecutive ArrayRecord
records of frames_per_record frames each, from its `first` record. A clip is cut exactly as the
PyAV path cuts it (`clips.train_view` / `eval_view` from the same seeds), then the records
holding its frames are read by index and only its num_frames JPEGs are decoded, inside the
tf.data graph, and only the crop window of each (`decode_and_crop_jpeg`). So a clip costs the same wherever it sits in a video, and the
clips equal the PyAV path's up to JPEG's error.

Importing this module imports TensorFlow.
"""

import threading

import numpy as np

from dcrn_jax.data import clips
from dcrn_jax.data.tf_import import tf, tfds


class FrameReader:
  """Records of one split by their index, from its ArrayRecord shards.

  Thread-safe (tf.data calls it from several threads); a shard's reader opens on first use.
  """

  def __init__(self, filepaths, shard_lengths):
    self._paths = [str(p) for p in filepaths]
    self._ends = np.cumsum(shard_lengths)
    self._starts = self._ends - np.asarray(shard_lengths)
    self._readers = {}
    self._lock = threading.Lock()

  def _reader(self, shard: int):
    with self._lock:
      if shard not in self._readers:
        from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
        # Random access: no read-ahead, and no thread pool per call (tf.data runs the calls in
        # parallel already).
        self._readers[shard] = array_record_module.ArrayRecordReader(
            self._paths[shard], "readahead_buffer_size:0,max_parallelism:0")
      return self._readers[shard]

  def read(self, indices: np.ndarray) -> np.ndarray:
    """object (len(indices),) of serialized records."""
    indices = np.asarray(indices, np.int64)
    shards = np.searchsorted(self._ends, indices, side="right")
    out = np.empty(len(indices), dtype=object)
    for shard in np.unique(shards):
      rows = np.flatnonzero(shards == shard)
      local = [int(i) for i in indices[rows] - self._starts[shard]]
      out[rows] = self._reader(int(shard)).read(local)
    return out


def frame_reader(path: str, split: str) -> FrameReader:
  """The reader of `split` of the prepared shards in folder `path`."""
  info = tfds.builder_from_directory(path).info.splits[split]
  return FrameReader(info.filepaths, info.shard_lengths)


_RECORD_FEATURES = {"images": tf.io.RaggedFeature(tf.string),
                    "first_frame": tf.io.FixedLenFeature([], tf.int64)}


def _plan(reader, spec, k, train, video_len, height, width, first, seed_or_view):
  """(serialized records holding the clip's frames, positions of its frames in them (T,),
  [top, left, flip, first frame of the first record]) of one clip."""
  args = (int(video_len), int(height), int(width), spec)
  if train:
    indices, _, top_left, flip = clips.train_view(*args, seed_or_view)
  else:
    indices, _, top_left, flip = clips.eval_view(*args, int(seed_or_view))
  low, high = int(indices.min()) // k, int(indices.max()) // k
  records = reader.read(int(first) + np.arange(low, high + 1))
  return (records, np.asarray(indices - low * k, np.int64),
          np.array([*top_left, int(flip), low * k], np.int64))


def _decode(records, positions, window, spec: clips.ClipSpec, k: int):
  """The clip uint8 (T, S, S, 3) from its records (R,), positions (T,) and window (4,)."""
  parsed = tf.io.parse_example(tf.ensure_shape(records, [None]), _RECORD_FEATURES)
  # A record out of place would silently train on wrong frames: check where each one starts.
  expected = window[3] + k * tf.range(tf.size(records, out_type=tf.int64))
  check = tf.debugging.assert_equal(parsed["first_frame"], expected,
                                    message="video shards: a record is not the one asked for")
  with tf.control_dependencies([check]):
    jpegs = tf.gather(parsed["images"].flat_values,
                      tf.ensure_shape(positions, [spec.num_frames]))
  crop = tf.stack([tf.cast(window[0], tf.int32), tf.cast(window[1], tf.int32), spec.size,
                   spec.size])
  # Unrolled (num_frames is static): cheaper than a map_fn loop per clip.
  frames = tf.stack([tf.io.decode_and_crop_jpeg(jpegs[t], crop, channels=3)
                     for t in range(spec.num_frames)])
  frames = tf.cond(window[2] > 0, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
  return tf.ensure_shape(frames, (spec.num_frames, spec.size, spec.size, 3))


def clip_fn(reader: FrameReader, spec: clips.ClipSpec, frames_per_record: int, train: bool):
  """(video_len, height, width, first record, seed or view) -> uint8 (T, S, S, 3), cut as the
  PyAV path cuts it (height, width: the source's; the stored frames are resized already)."""
  k = frames_per_record

  def clip(video_len, height, width, first, seed_or_view):
    records, positions, window = tf.numpy_function(
        lambda *a: _plan(reader, spec, k, train, *a),
        [video_len, height, width, first, seed_or_view], [tf.string, tf.int64, tf.int64],
        stateful=False)
    return _decode(records, positions, window, spec, k)

  return clip


def train_plan_fn(reader: FrameReader, spec: clips.ClipSpec, frames_per_record: int):
  """For a batch of training examples at once: (records, seeds) -> per example
  {'records': ragged, 'positions', 'window', 'label'}: one Python call per batch instead of
  one per clip (what a clip costs besides decoding is mostly that call)."""
  k = frames_per_record

  def plan_many(video_lens, heights, widths, firsts, seeds):
    plans = [_plan(reader, spec, k, True, *a)
             for a in zip(video_lens, heights, widths, firsts, seeds)]
    return (np.concatenate([p[0] for p in plans]),
            np.array([len(p[0]) for p in plans], np.int64),
            np.stack([p[1] for p in plans]), np.stack([p[2] for p in plans]))

  def plan(records, seeds):
    _, label, video_len, height, width, first = records
    flat, lengths, positions, windows = tf.numpy_function(
        plan_many, [video_len, height, width, first, seeds],
        [tf.string, tf.int64, tf.int64, tf.int64], stateful=False)
    return {"records": tf.RaggedTensor.from_row_lengths(flat, lengths), "label": label,
            "positions": positions, "window": windows}

  return plan


def train_clip(planned, spec: clips.ClipSpec, frames_per_record: int):
  """uint8 (T, S, S, 3) of one example planned by train_plan_fn."""
  return _decode(planned["records"], planned["positions"], planned["window"], spec,
                 frames_per_record)
