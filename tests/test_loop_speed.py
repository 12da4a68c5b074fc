"""The loop's speed work: the fast row-index stream of resident TFDS splits keeps the streamed
order, stored clips streamed as whole batches (`tfds_source._fast_clips`) equal TFDS's own
decoding, and benchmarks/bench_loop.py's windows are what its docstring says."""

import types

import pathlib
import sys

import numpy as np
import pytest

from configs import video_gru
from dcrn_jax import data
from dcrn_jax.data import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_loop  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.needs_tf  # moving_digits is a TFDS dataset.
def test_resident_row_indices_name_the_streamed_examples_over_epochs_and_processes(tmp_path):
  d = video_gru.get_config().data
  d.data_dir = str(tmp_path / "tfds")
  d.num_frames, d.image_size = 2, 16
  d.num_train_examples, d.num_test_examples = 40, 8
  d.shuffle_buffer = 16  # Smaller than the split: the shuffle's own order is compared.
  pixels = data.split_pixels(d, train=True, start=0, stop=40)
  for batch, start, processes in ((7, 9, 1), (6, 3, 2)):
    for p in range(processes):
      kwargs = dict(local_batch_size=batch, seed=5, start_step=start, process_index=p,
                    process_count=processes)
      streamed, rows = data.train_batches(d, scaled=False, **kwargs), data.train_indices(d,
                                                                                         **kwargs)
      share = common.process_share(40, process_index=p, process_count=processes, train=True,
                                   split="train")
      seen = []
      for _ in range(3 * 40 // (batch * processes) + 1):  # Past the second epoch's end.
        index, expected = next(rows)["index"], next(streamed)
        assert index.dtype == np.int32
        assert np.all((index >= share.first) & (index < share.first + share.count))
        np.testing.assert_array_equal(pixels["inputs"][index], expected["inputs"])
        np.testing.assert_array_equal(pixels["label"][index], expected["label"])
        seen += list(index)
      assert len(set(seen)) == share.count  # Every row of the share, each epoch reshuffled.


@pytest.mark.needs_tf
def test_stored_clips_stream_whole_batches_from_the_records_tfds_reads(tmp_path):
  """moving_digits takes the batch decoder (the test above compares its batches with TFDS's
  own decode_example, which `split_pixels` uses); a dataset TFDS reads interleaved does not."""
  from dcrn_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  from dcrn_jax.data.tf_import import tfds  # pylint: disable=g-import-not-at-top
  d = video_gru.get_config().data
  d.data_dir = str(tmp_path / "tfds")
  d.num_frames, d.image_size, d.num_train_examples, d.num_test_examples = 2, 16, 12, 4
  builder, kind, key, shape = tfds_source._open(d)  # pylint: disable=protected-access
  assert tfds_source._fast_clips(builder, kind, key, shape, "train[2:7]")  # pylint: disable=protected-access
  records = tfds_source._serialized_records(builder, "train[2:7]")  # pylint: disable=protected-access
  expected = [ex["video"] for ex in tfds.as_numpy(builder.as_dataset(split="train[2:7]"))]
  got = tfds_source._batch_clip_decoder(builder, key, shape)(  # pylint: disable=protected-access
      records.batch(5).get_single_element())["inputs"].numpy()
  np.testing.assert_array_equal(got, np.stack(expected))

  def stub(num_files, disable_shuffling):
    split = types.SimpleNamespace(file_instructions=[None] * num_files)
    info = types.SimpleNamespace(file_format=tfds.core.FileFormat.TFRECORD, splits={"s": split},
                                 disable_shuffling=disable_shuffling)
    return types.SimpleNamespace(info=info)
  assert tfds_source._serialized_records(stub(2, False), "s") is None  # pylint: disable=protected-access


def test_bench_loop_windows_pair_each_log_window_with_its_host_cpu_time():
  out = "\n".join([
      "[bench_loop] host_cpu 1 10.000000", "first step (with compilation) took 0:03",
      "[bench_loop] host_cpu 10 10.009000", "[train] step 10/30 | loss 1 | 9.00 steps/s | ETA 0:02",
      "[bench_loop] host_cpu 20 10.014000", "[train] step 20/30 | loss 1 | 20.50 steps/s | ETA 0:01",
      "[bench_loop] host_cpu 30 10.016000", "[train] step 30/30 | loss 1 | 30.25 steps/s | ETA 0:00",
      "[bench_loop] host_cpu 30 10.900000", "[test] step 30/30 | accuracy 0.5"])
  rates, host = bench_loop.windows(out)
  assert rates == [20.5, 30.25]  # The first window (pipeline warm-up) is left out.
  np.testing.assert_allclose(host, [0.5, 0.2])  # ms of main-thread CPU per step; eval's not.
