"""How far does `config` walk from train_and_evaluate? Rooms entered and climbs back, measured.

    python benchmarks/config_walk.py [--root CHECKOUT]

Runs train_and_evaluate of the checkout at --root (default: this one) on two tiny runs, one per
task (classification: the video_gru model on `synthetic` clips; forecasting: the
forecast_moving_digits config on `moving_digits_seq`), each for 2 steps with one evaluation,
in a fresh process under `sys.setprofile` (every thread), and prints what it saw.

Definitions (a *config frame* is a call of a function of the dcrn_jax package that receives a
ConfigDict, the run's config or one of its sub-configs such as config.data, as an argument):

  walk         the tree of config frames below the train_and_evaluate call: each config
               frame's parent is the nearest config frame on its thread's call stack
  module       a dcrn_jax module (dotted name) that holds a config frame of the walk, other
               than dcrn_jax.train itself
  room         the same at the house's grain (docs/contributing.md's layout): a package
               (data/, models/, tasks/, report/, datasets/) counts as one room, a top-level
               module as its own
  climb back   a distinct (caller function, callee function) edge of the walk whose two
               functions lie in different modules (rooms, at the house's grain): each is a
               return from one to the other that some code path makes with the config in hand
  task tests   the comparisons of `config.task` (or a name bound to it) with a literal, in the
               source of dcrn_jax/train.py, predict(.py or /__init__.py), export.py and models/ (ast)

A generator's frame counts when it is first entered, not each time it is resumed. Both runs'
walks are merged (a union of rooms and of edges), so a room or a climb that only one
task makes counts once. Functions defined inside others count as their own functions.
"""

import argparse
import ast
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CHILD = r"""
import collections, json, sys, threading
sys.path.insert(0, {root!r})
import ml_collections
from configs import video_gru, forecast_moving_digits
from dcrn_jax import train

def classify():
  c = video_gru.get_config()
  c.data.name, c.data.synthetic_shape, c.data.synthetic_num_classes = "synthetic", (4, 16, 16, 1), 3
  c.data.num_frames, c.data.image_size = 4, 16
  c.data.num_train_examples, c.data.num_test_examples = 32, 16
  c.model.stem_stride, c.model.conv_features, c.model.embed_dim, c.model.hidden_size = 2, (8,), 8, 8
  return c

def forecast():
  c = forecast_moving_digits.get_config()
  c.data.image_size, c.data.num_frames, c.data.input_frames, c.data.output_frames = 16, 4, 2, 2
  c.data.num_train_examples, c.data.num_test_examples = 16, 8
  c.model.convlstm_features, c.model.patch_size = (8,), 4
  c.forecast.num_shown = 0
  return c

PKG = {pkg!r}
edges, rooms = set(), set()
stacks = collections.defaultdict(list)  # thread -> [(frame, config frame?)]
active = [False]
GENERATOR = 0x20 | 0x200  # CO_GENERATOR, CO_ASYNC_GENERATOR
started = set()  # Generator frames already entered: a resumption (next()) is no new call.

def where(frame):
  path = frame.f_code.co_filename
  if not path.startswith(PKG):
    return None
  module = path[len({root!r}) + 1:-3].replace("/", ".").replace(".__init__", "")
  return module + ":" + frame.f_code.co_qualname

def receives_config(frame):
  code = frame.f_code
  n = code.co_argcount + code.co_kwonlyargcount
  return any(isinstance(frame.f_locals.get(a), (ml_collections.ConfigDict,
                                                ml_collections.FrozenConfigDict))
             for a in code.co_varnames[:n])

def profile(frame, event, arg):
  stack = stacks[threading.get_ident()]
  if event == "call":
    name = where(frame)
    is_config = bool(name) and receives_config(frame)
    if name and name.endswith(":train_and_evaluate") and name.startswith("dcrn_jax.train:"):
      active[0] = True
    resumed = frame.f_code.co_flags & GENERATOR and id(frame) in started
    if frame.f_code.co_flags & GENERATOR:
      started.add(id(frame))
    if is_config and active[0] and not resumed:
      parent = next((n for f, n in reversed(stack) if n), None)
      if parent and parent != name:
        edges.add((parent, name))
      rooms.add(name.split(":")[0])
    stack.append((frame, name if is_config and active[0] else None))
  elif event == "return" and stack:
    stack.pop()

for make in (classify, forecast):
  c = make()
  c.batch_size, c.eval_batch_size = 4, 4
  c.num_train_steps, c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 2, 0, 2
  c.optim.warmup_steps = 1
  c.progress_bar = False
  threading.setprofile(profile)
  sys.setprofile(profile)
  train.train_and_evaluate(c, {workdir!r} + "/" + make.__name__)
  sys.setprofile(None)
  threading.setprofile(None)
  active[0] = False
print("RESULT " + json.dumps({{"rooms": sorted(rooms), "edges": sorted(edges)}}))
"""


def task_tests(root: pathlib.Path) -> list[str]:
  """file:line of each `config.task` (or `task`) compared with a string literal."""
  files = [root / "dcrn_jax" / f for f in ("train.py", "predict.py", "predict/__init__.py", "export.py")]
  files += sorted((root / "dcrn_jax" / "models").glob("*.py"))
  found = []
  for path in files:
    if not path.exists():
      continue
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if not isinstance(node, ast.Compare):
        continue
      sides = [node.left, *node.comparators]
      names_task = any(isinstance(s, ast.Attribute) and s.attr == "task"
                       or isinstance(s, ast.Name) and s.id == "task" for s in sides)
      has_literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str)
                        or isinstance(s, (ast.Tuple, ast.Name)) and not (
                            isinstance(s, ast.Name) and s.id == "task") for s in sides)
      if names_task and has_literal:
        found.append(f"{path.relative_to(root)}:{node.lineno}")
  return found


def walk(root: pathlib.Path) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    code = _CHILD.format(root=str(root), pkg=str(root / "dcrn_jax") + os.sep, workdir=workdir)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", code], cwd=str(root), env=env, text=True,
                       capture_output=True, check=False)
  lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
  if r.returncode or not lines:
    raise SystemExit(f"the walk of {root} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
  result = json.loads(lines[-1][len("RESULT "):])
  modules = [m for m in result["rooms"] if m != "dcrn_jax.train"]
  module_climbs = [(a, b) for a, b in result["edges"] if _module(a) != _module(b)]
  return {"modules": modules, "module_climbs": module_climbs,
          "rooms": sorted({_room(m) for m in modules}),
          "climbs": [(a, b) for a, b in module_climbs if _room(_module(a)) != _room(_module(b))],
          "task_tests": task_tests(root)}


def _module(function: str) -> str:
  return function.split(":")[0]


def _room(module: str) -> str:
  """dcrn_jax.data.sequences -> dcrn_jax.data: the top-level entry of the package."""
  return ".".join(module.split(".")[:2])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default=str(ROOT))
  parser.add_argument("--verbose", action="store_true", help="list the rooms and the climbs")
  args = parser.parse_args()
  found = walk(pathlib.Path(args.root).resolve())
  if args.verbose:
    for module in found["modules"]:
      print(f"  module {module}")
    for a, b in found["module_climbs"]:
      print(f"  climb {b} -> {a}")
    for test in found["task_tests"]:
      print(f"  task test {test}")
  print(f"{args.root}: modules {len(found['modules'])}, climbs back between modules "
        f"{len(found['module_climbs'])}; rooms {len(found['rooms'])}, climbs back between rooms "
        f"{len(found['climbs'])}; config.task tests {len(found['task_tests'])}")


if __name__ == "__main__":
  main()
