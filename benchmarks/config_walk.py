"""How far does `config` walk from train_and_evaluate? Rooms entered and climbs back, measured.

    python benchmarks/config_walk.py [--root CHECKOUT]

Runs train_and_evaluate of the checkout at --root (default: this one) on two tiny runs, one per
task (classification: the video_gru model on `synthetic` clips; forecasting: the
forecast_moving_digits config on `moving_digits_seq`), each for 2 steps with one evaluation,
in a fresh process under `sys.setprofile` (every thread), and prints what it saw.

Definitions (a *config frame* is a call of a function of the dcrn_jax package that receives a
ConfigDict, the run's config or one of its sub-configs such as config.data, as an argument):

  walk         the config frames below the train_and_evaluate call, each joined to its
               caller by one of two rules:
                 lexical  the package function whose code made the call, a nested function
                          (closure, generator) lifted to the def it is written in: where a
                          reader of the source sees the config handed on (the default)
                 stack    the nearest config frame on the thread's call stack (the first
                          version of this tool)
  module       a dcrn_jax module (dotted name) that holds a config frame of the walk, other
               than dcrn_jax.train itself
  room         the same at the house's grain (docs/contributing.md's layout): a package
               (data/, models/, tasks/, report/, datasets/) counts as one room, a top-level
               module as its own
  climb back   a distinct (caller function, callee function) edge of the walk whose two
               functions lie in different modules (rooms, at the house's grain): each is a
               return from one to the other that some code path makes with the config in hand
  task tests   comparisons with a task's name (the string 'classify' or 'forecast') anywhere
               in the package outside dcrn_jax/tasks/ (ast)

Why two rules: under `stack`, a generator's body is joined to whoever first resumes it, not to
the function that made it with the config. At be1b8e5 the evaluation drew the test sequences
in train.py's frames, so data.sequences' `_draw` (called inside a generator that
data.sequences' eval_batches made) counted as climbs back to train.py's `_evaluate_state` and
`fit`, which never hand the config to it; once a prefetch thread resumes the same generators
those climbs vanish (its stack holds no config frame). The lexical rule gives the same edge
whichever thread runs the generator. Both are printed; compare checkouts under one rule.

A generator's frame counts when it is first entered, not each time it is resumed. Both runs'
walks are merged (a union of rooms and of edges), so a room or a climb that only one
task makes counts once. Under `stack` functions defined inside others count as their own
functions; under `lexical` they are read with the def they are written in.
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
edges, lexical_edges, rooms = set(), set(), set()
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

def lift(name):  # module:outer of module:outer.<locals>.inner: read with its def.
  return name.split(".<locals>")[0]

def lexical_caller(frame):
  # The package function whose code made this call (nested functions lifted to their def;
  # frames outside the package, such as the standard library's, skipped).
  f = frame.f_back
  while f is not None:
    name = where(f)
    if name:
      return lift(name)
    f = f.f_back
  return None

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
      caller = lexical_caller(frame)
      if caller and caller != lift(name):
        lexical_edges.add((caller, lift(name)))
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
print("RESULT " + json.dumps({{"rooms": sorted(rooms), "edges": sorted(edges),
                              "lexical_edges": sorted(lexical_edges)}}))
"""


TASK_NAMES = ("classify", "forecast")


def task_tests(root: pathlib.Path) -> list[str]:
  """file:line of each comparison with a task's name (a string literal 'classify' or
  'forecast', e.g. `config.task == "forecast"`) in the package outside dcrn_jax/tasks/ (ast)."""
  found = []
  for path in sorted((root / "dcrn_jax").rglob("*.py")):
    if "tasks" in path.relative_to(root / "dcrn_jax").parts[:1]:
      continue
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.Compare) and any(
          isinstance(side, ast.Constant) and side.value in TASK_NAMES
          for side in [node.left, *node.comparators]):
        found.append(f"{path.relative_to(root)}:{node.lineno}")
  return found


def walk(root: pathlib.Path) -> dict:
  """{'modules', 'rooms', 'stack': climbs, 'lexical': climbs, 'task_tests'} of the checkout."""
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
  found = {"modules": modules, "rooms": sorted({_room(m) for m in modules}),
           "task_tests": task_tests(root)}
  for rule, edges in (("stack", result["edges"]), ("lexical", result["lexical_edges"])):
    module_climbs = [(a, b) for a, b in edges if _module(a) != _module(b)]
    found[rule] = {"module_climbs": module_climbs,
                   "climbs": [(a, b) for a, b in module_climbs
                              if _room(_module(a)) != _room(_module(b))]}
  return found


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
    for rule in ("stack", "lexical"):
      for a, b in found[rule]["climbs"]:
        print(f"  {rule} climb {b} -> {a}")
    for test in found["task_tests"]:
      print(f"  task test {test}")
  print(f"{args.root}: modules {len(found['modules'])}, rooms {len(found['rooms'])}; "
        f"task-name tests {len(found['task_tests'])}")
  for rule in ("lexical", "stack"):
    print(f"  {rule:8s} climbs back between modules {len(found[rule]['module_climbs'])}, "
          f"between rooms {len(found[rule]['climbs'])}")


if __name__ == "__main__":
  main()
