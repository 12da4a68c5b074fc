"""Every module of the package imports beside every other one in one process: no flag is
defined twice (absl's DuplicateFlagError), no import cycle breaks, no entry point runs."""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import importlib, pkgutil, sys
import dcrn_jax
names = sorted(m.name for m in pkgutil.walk_packages(dcrn_jax.__path__, "dcrn_jax."))
for name in names:
  importlib.import_module(name)
from absl import flags
print(len(names), " ".join(names))
print("FLAGS", " ".join(sorted(flags.FLAGS)))
"""


def test_every_module_imports_in_one_process():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=_ROOT)
  r = subprocess.run([sys.executable, "-c", _CHILD], cwd=_ROOT, env=env, text=True,
                     capture_output=True, timeout=300, check=False)
  assert r.returncode == 0, r.stderr[-3000:]
  count, names = r.stdout.splitlines()[0].split(" ", 1)
  names = names.split()
  # The entry points are among them (their flags were what collided), and nothing is missed.
  for entry in ("dcrn_jax.main", "dcrn_jax.prepare", "dcrn_jax.report.__main__",
                "dcrn_jax.predict.__main__", "dcrn_jax.export", "dcrn_jax.tasks.forecasting"):
    assert entry in names, entry
  on_disk = sum(f.endswith(".py") for _, _, files in os.walk(os.path.join(_ROOT, "dcrn_jax"))
                for f in files)
  assert int(count) == len(names) == on_disk - 1  # All but dcrn_jax/__init__.py itself.
  # Importing defines no command's flags: only running a command does.
  flag_line = r.stdout.splitlines()[1]
  assert "workdir" not in flag_line.split() and "verbose" not in flag_line.split(), flag_line
