"""Makes this Python behave as on an accelerator machine without TensorFlow.

With this folder first on PYTHONPATH, TensorFlow and TFDS look absent in the test process and in
every subprocess it starts: `import tensorflow` raises ModuleNotFoundError and
`importlib.util.find_spec("tensorflow")` (how libraries such as etils probe for it) is None.

    PYTHONPATH=tests/without_tf:. python -m pytest -q tests -m "not needs_tf"

shows which tests run (and pass) on such a machine. benchmarks/accelerator_check.py uses it.
"""

import sys

BLOCKED = ("tensorflow", "tensorflow_datasets")

for _name in BLOCKED:
  sys.modules[_name] = None  # Python's own marker for "this module cannot be imported".
