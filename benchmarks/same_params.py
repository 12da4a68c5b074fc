"""Do two checkouts train the same parameters? A guard for refactors that must not change results.

    # in each checkout (the old one e.g. from `git worktree add ../old HEAD~3`):
    python benchmarks/same_params.py run --out /tmp/params_new [--steps 30] [configs/x.py ...]
    python benchmarks/same_params.py compare /tmp/params_old /tmp/params_new

    # a config whose final eval is too long here (forecast_mfmnist_*: 10,000 test sequences):
    python benchmarks/same_params.py run --out DIR --max_test_examples 64 configs/forecast_mfmnist_convlstm.py

`run` trains every config in configs/ (or those named) for --steps steps with its own seed, in one
fresh process per config (so the code of *this* checkout is what runs), and writes the final
parameters, batch statistics and the final eval metrics to OUT/<config>.npz / .json. cifar10 runs
under `tfds.testing.mock_data` (no download). `compare` says, per config, whether every array is
bitwise equal and how far the eval metrics moved. The workdirs stay in OUT/<config>/ so that an
older checkout's checkpoints can be restored by the newer code.

--max_test_examples N caps data.num_test_examples (read by the generated-sequence sources,
`*_seq`, whose test sequence i depends on i alone: the cap keeps the first N of the same test
set) so that a config with a long final evaluation can be compared; training is untouched.
Give the same cap on both sides: `compare` then compares like with like (its eval metrics are
over the first N sequences), and the .json records the cap.
"""

import argparse
import glob
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CHILD = r"""
import contextlib, json, os, sys
sys.path.insert(0, {root!r})
import numpy as np
import orbax.checkpoint as ocp
import importlib.util
spec = importlib.util.spec_from_file_location("cfg", {config_path!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
config = module.get_config()
config.num_train_steps = {steps}
config.log_every_steps = {steps}
config.eval_every_steps = 0
config.checkpoint_every_steps = {steps}
config.optim.warmup_steps = min(config.optim.warmup_steps, 5)
config.progress_bar = False
config.data.data_dir = {data_dir!r}
if {max_test!r} and config.data.name.endswith("_seq"):
  config.data.num_test_examples = min(config.data.num_test_examples, {max_test!r})
from dcrn_jax import train

@contextlib.contextmanager
def mocked(name, num):
  from dcrn_jax.data.tf_import import tfds
  meta = os.path.join({out!r}, name + "_metadata")
  builder = tfds.builder(name, data_dir=meta)
  template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                           filetype_suffix="tfrecord")
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[num], num_bytes=0,
                          filename_template=template.replace(split=s)) for s in ("train", "test")]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)
  with tfds.testing.mock_data(num_examples=num, data_dir=meta):
    yield

ctx = mocked("cifar10", 600) if config.data.name == "cifar10" else contextlib.nullcontext()
with ctx:
  if config.data.name == "cifar10":
    config.data.data_dir = os.path.join({out!r}, "cifar10_data")
  metrics = train.train_and_evaluate(config, {workdir!r})
restored = ocp.StandardCheckpointer().restore(os.path.join({workdir!r}, "checkpoints", "{steps}", "model"))
flat = {{"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in __import__("jax").tree_util.tree_leaves_with_path(restored)}}
np.savez({npz!r}, **flat)
with open({json_path!r}, "w") as f:
  json.dump(dict({{k: v for k, v in metrics.items() if isinstance(v, (int, float))}},
                 max_test_examples={max_test!r}), f, indent=1)
"""


def run(out: str, steps: int, configs: list[str], data_dir: str, max_test: int = 0) -> None:
  os.makedirs(out, exist_ok=True)
  configs = configs or sorted(p for p in glob.glob(str(ROOT / "configs" / "*.py"))
                              if not p.endswith(("__init__.py", "default.py")))
  for path in configs:
    name = pathlib.Path(path).stem
    code = _CHILD.format(root=str(ROOT), config_path=os.path.abspath(path), steps=steps,
                         data_dir=data_dir, out=out, max_test=max_test,
                         workdir=os.path.join(out, name),
                         npz=os.path.join(out, name + ".npz"),
                         json_path=os.path.join(out, name + ".json"))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    print(f"{name}: training {steps} steps", flush=True)
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env, text=True,
                       capture_output=True)
    if r.returncode:
      print(r.stdout[-2000:], r.stderr[-4000:])
      raise SystemExit(f"{name} failed")


def compare(a: str, b: str) -> int:
  bad = 0
  for npz in sorted(glob.glob(os.path.join(a, "*.npz"))):
    name = pathlib.Path(npz).stem
    other = os.path.join(b, name + ".npz")
    if not os.path.exists(other):
      print(f"{name}: missing in {b}")
      bad += 1
      continue
    x, y = dict(np.load(npz)), dict(np.load(other))
    same_names = x.keys() == y.keys()
    unequal = [k for k in x if k in y and not np.array_equal(x[k], y[k])]
    ma = json.load(open(os.path.join(a, name + ".json"), encoding="utf-8"))
    mb = json.load(open(os.path.join(b, name + ".json"), encoding="utf-8"))
    moved = {k: abs(ma[k] - mb[k]) for k in ma if k in mb and ma[k] != mb[k]}
    verdict = "bitwise equal" if same_names and not unequal else "DIFFERENT"
    bad += verdict != "bitwise equal"
    print(f"{name}: {len(x)} arrays {verdict}"
          + ("" if same_names else f" (names differ: {sorted(x.keys() ^ y.keys())[:4]})")
          + (f" (unequal: {unequal[:4]})" if unequal else "")
          + f"; eval metrics {'identical' if not moved else 'moved ' + str(moved)}")
  return bad


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run")
  r.add_argument("configs", nargs="*")
  r.add_argument("--out", required=True)
  r.add_argument("--steps", type=int, default=30)
  r.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
  r.add_argument("--max_test_examples", type=int, default=0,
                 help="cap data.num_test_examples of the *_seq sources (0: as configured)")
  c = sub.add_parser("compare")
  c.add_argument("a")
  c.add_argument("b")
  args = parser.parse_args()
  if args.command == "run":
    run(args.out, args.steps, args.configs, args.data_dir, args.max_test_examples)
  else:
    raise SystemExit(1 if compare(args.a, args.b) else 0)


if __name__ == "__main__":
  main()
