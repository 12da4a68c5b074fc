"""Reading a workdir written by an older dcrn_jax: fields its config.json does not have.

Every config field added after the first release that wrote config.json is listed in
WHEN_ABSENT with the value that reproduces what the older code did without it (for each, the
default it was added with: the new behaviour is opt-in). A config.json without such a field
reads as if it held that value, so resuming an older run with the current config is not "another
config", and predict/export/report see a whole config.

A field that is absent and not in the table cannot be resolved: resuming names it and says
what to add to config.json (unresolved()).

config.json records the version that wrote it under VERSION_KEY (read_version()); files from
before 0.2.0 have no such key.
"""

import dcrn_jax

VERSION_KEY = "written_by_dcrn_jax"

# field -> its value in runs written before the field existed (git log -S on configs/default.py
# gives the commit that added each; the value is the default it was added with).
WHEN_ABSENT = {
    "async_checkpointing": True,                 # 57d22f1
    "data.shard_by_process": True,               # 1788323
    "on_nonfinite": "stop",                      # 38ac3b0
    "data.augment_crop_padding": 0,              # c644a7f: images
    "data.augment_flip": False,
    "data.augment_rotation_degrees": 0.0,
    "data.frame_stride": 1,
    "data.manual_dir": "",
    "data.normalize_mean": (),
    "data.normalize_std": (),
    "data.num_test_clips": 1,
    "data.num_test_crops": 1,
    "data.resize_short": 0,
    "data.video_dir": "",
    "best_metric": "",                           # a57dfdb: training features (issue 16)
    "checkpoint_every_epochs": 0.0,
    "eval_every_epochs": 0.0,
    "log_every_epochs": 0.0,
    "num_epochs": 0.0,
    "optim.accumulate_steps": 1,
    "optim.ema_decay": 0.0,
    "optim.ema_eval": True,
    "data.class_names_file": "",                 # ed38bac: video layouts (issue 18)
    "data.eval_fraction": 0.0,
    "data.split": 1,
    "data.split_format": "folders",
    "data.split_lists": "",
    "data.jpeg_quality": 90,                     # 5bca72c: video shards (issue 15)
    "data.prepare_workers": 0,
    "data.video_cache": False,
    "data.video_seek": True,
    "task": "classify",                          # e436a01: forecasting
    "model.patch_size": 1,
    "data.input_frames": 10,
    "data.output_frames": 10,
    "forecast.l1_weight": 0.0,
    "forecast.num_shown": 4,
    "forecast.sampling_decay": 2e-05,
    "forecast.sampling_start": 1.0,
    "forecast.sampling_stop_step": 50000,
    "model.decouple_beta": 0.0,                  # 41cc318: PredRNN (issue 27)
    "forecast.reverse_sampling": False,
    "forecast.r_exp_alpha": 5000.0,
    "forecast.r_sampling_step_1": 25000,
    "forecast.r_sampling_step_2": 50000,
    "data.on_device": "auto",                    # feeding (issue 26): where batches come from
    "data.on_device_max_bytes": "auto",
}


def version() -> str:
  """The running dcrn_jax's version (dcrn_jax.__version__, which pyproject.toml also reads: an
  editable install's metadata can name another checkout's)."""
  return dcrn_jax.__version__


def stamp(config_dict: dict) -> dict:
  """config_dict with the version that writes it (for config.json)."""
  return {**config_dict, VERSION_KEY: version()}


def read_version(raw: dict) -> str:
  """The version that wrote a config.json's dict; 'before 0.2.0' when it does not say."""
  return raw.get(VERSION_KEY) or "before 0.2.0"


def _leaves(tree: dict, prefix: str = ""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _has(tree: dict, dotted: str) -> bool:
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return False
    tree = tree[part]
  return True


def _put(tree: dict, dotted: str, value) -> None:
  *parents, leaf = dotted.split(".")
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def upgrade(saved: dict, current: dict) -> dict:
  """saved (a config.json's dict, without VERSION_KEY) with every field of `current` that it
  lacks and WHEN_ABSENT resolves filled in with that value (a new dict)."""
  filled = _deep_copy(saved)
  for dotted, _ in _leaves(current):
    if not _has(saved, dotted) and dotted in WHEN_ABSENT:
      value = WHEN_ABSENT[dotted]
      _put(filled, dotted, list(value) if isinstance(value, tuple) else value)
  return filled


def table_tree() -> dict:
  """WHEN_ABSENT's fields as a nested dict (leaves None): what upgrade() fills when the current
  config is not at hand (predict, export, report read only the workdir)."""
  tree = {}
  for dotted in WHEN_ABSENT:
    _put(tree, dotted, None)
  return tree


def _deep_copy(tree):
  return {k: _deep_copy(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def unresolved(saved: dict, current: dict, within: str) -> list[str]:
  """Fields under `within` (a dotted prefix, or a single field) that `current` has, `saved`
  lacks, and WHEN_ABSENT cannot fill."""
  return [dotted for dotted, _ in _leaves(current)
          if (dotted == within or dotted.startswith(within + "."))
          and not _has(saved, dotted) and dotted not in WHEN_ABSENT]
