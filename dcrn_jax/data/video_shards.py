"""Reading prepared video shards (data.video_cache=True): only the frames a clip needs.

The shards (dcrn_jax/datasets/video_shards/) hold a video's frames in consecutive ArrayRecord
records of frames_per_record frames each, from its `first` record. A clip is cut exactly as the
PyAV path cuts it (`clips.train_view` / `eval_view` from the same seeds), then the records
holding its frames are read by index and only its num_frames JPEGs are decoded, inside the
tf.data graph, and only the crop window of each (`decode_and_crop_jpeg`). So a clip costs the
same wherever it sits in a video, and the clips equal the PyAV path's up to JPEG's error.
Training makes a batch at a time (`train_batch_fn`); eval a view at a time (`clip_fn`).

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


def train_batch_fn(reader: FrameReader, spec: clips.ClipSpec, frames_per_record: int):
  """(records (B,), seeds (B, 2)) -> (uint8 clips (B, T, S, S, 3), labels (B,)): a batch of
  training clips cut as the PyAV path cuts them (`clips.train_view`), from one Python call (the
  clips' views and their records), one parse of the batch's records and one decode loop over
  its B*T frames (only each frame's crop window)."""
  k = frames_per_record

  def plan(video_lens, heights, widths, firsts, seeds):
    """The batch's records (R,) and the first frame each must hold (R,); per frame (B*T,):
    the slot of its record, its position there, its crop window [top, left, S, S]; flips (B,)."""
    wanted, starts, slots, positions, windows, flips = [], [], [], [], [], []
    for video_len, height, width, first, seed in zip(video_lens, heights, widths, firsts, seeds):
      indices, _, top_left, flip = clips.train_view(int(video_len), int(height), int(width),
                                                    spec, seed)
      low, high = int(indices.min()) // k, int(indices.max()) // k
      slots.append(len(wanted) + indices // k - low)
      wanted.extend(range(int(first) + low, int(first) + high + 1))
      starts.extend(range(low * k, (high + 1) * k, k))
      positions.append(indices % k)
      windows.append([*top_left, spec.size, spec.size])
      flips.append(flip)
    return (reader.read(np.asarray(wanted, np.int64)), np.asarray(starts, np.int64),
            np.concatenate(slots), np.concatenate(positions),
            np.repeat(np.asarray(windows, np.int32), spec.num_frames, axis=0),
            np.asarray(flips))

  def batch(records, seeds):
    _, label, video_len, height, width, first = records
    flat, starts, slots, positions, windows, flips = tf.numpy_function(
        plan, [video_len, height, width, first, seeds],
        [tf.string, tf.int64, tf.int64, tf.int64, tf.int32, tf.bool], stateful=False)
    parsed = tf.io.parse_example(tf.ensure_shape(flat, [None]), _RECORD_FEATURES)
    # A record out of place would silently train on wrong frames: check where each one starts.
    check = tf.debugging.assert_equal(parsed["first_frame"], starts,
                                      message="video shards: a record is not the one asked for")
    images = parsed["images"]
    with tf.control_dependencies([check]):
      jpegs = tf.gather(images.flat_values,
                        tf.cast(tf.gather(images.row_splits, slots), tf.int64) + positions)
    t = spec.num_frames
    jpegs = tf.reshape(jpegs, [-1, t])
    windows = tf.reshape(windows, [-1, t, 4])

    def clip(args):
      clip_jpegs, clip_windows, flip = args
      # Unrolled over the clip's frames (num_frames is static); one loop step per clip.
      frames = tf.stack([tf.io.decode_and_crop_jpeg(clip_jpegs[i], clip_windows[i], channels=3)
                         for i in range(t)])
      # Mirrored as rows of (pixel, channel): cheaper than reversing the 4-D clip's axis.
      return tf.cond(flip, lambda: tf.reshape(tf.reverse(tf.reshape(
          frames, [-1, spec.size, 3]), [1]), tf.shape(frames)), lambda: frames)

    frames = tf.map_fn(clip, (jpegs, windows, flips), fn_output_signature=tf.TensorSpec(
        (t, spec.size, spec.size, 3), tf.uint8))
    return frames, label

  return batch
