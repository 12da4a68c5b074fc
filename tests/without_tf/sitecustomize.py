"""Makes this Python behave as on an accelerator machine without TensorFlow.

With this folder first on PYTHONPATH, `import tensorflow` and `import tensorflow_datasets` fail
with ModuleNotFoundError, in the test process and in every subprocess it starts:

    PYTHONPATH=tests/without_tf:. python -m pytest -q tests -m "not needs_tf"

shows which tests run (and pass) on such a machine. benchmarks/accelerator_check.py uses it.
"""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets")


class _NoTensorFlow(importlib.abc.MetaPathFinder):

  def find_spec(self, fullname, path=None, target=None):  # pylint: disable=unused-argument
    if fullname.split(".")[0] in BLOCKED:
      raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by tests/without_tf)",
                                name=fullname)
    return None


sys.meta_path.insert(0, _NoTensorFlow())
