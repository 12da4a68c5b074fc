"""How our commands behave: the config loaded once, one-line errors, quiet libraries.

`dcrn_jax.main` (and the other `python -m dcrn_jax.*` commands) define their flags and hand
`app.run` the parser and wrapper from here:

- `exit_on_help`: --help and --helpfull print the usage and exit 0, without a config or workdir.
- `parse_flags`: the file of `--config=PATH` is loaded once (the folder holding `configs/` made
  importable, so `from configs import default` works from any directory); every
  `--config.a.b=value` override is checked against the config's keys first (a misspelled key is
  one line naming the valid ones), then ml_collections applies it with its type checks.
- `quiet_libraries`: absl/TensorFlow/Orbax/TFDS log lines and Python warnings are hidden unless
  `--verbose`: a user sees our lines only.
- `user_errors`: a `UserError` becomes one `error: ...` line on stderr and exit code 2; a Ctrl-C
  (`Interrupted`, after the run saved its work) its message and exit code 130.
"""

import contextlib
import difflib
import importlib.util
import logging as py_logging
import os
import sys
import warnings

from absl import app, flags, logging
from ml_collections import config_flags

from dcrn_jax.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C.


def fail(message: str):
  """Prints `error: message` and exits with code 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def _config_arg(argv: list[str]) -> tuple[str | None, list[str]]:
  """(the value of --config, argv without it); --config=V and --config V both work."""
  rest, value = [], None
  args = iter(argv)
  for arg in args:
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config":
      value = next(args, "")
    else:
      rest.append(arg)
  return value, rest


def load_config(spec: str):
  """The locked ConfigDict of `PATH[:ARGUMENT]` (get_config(ARGUMENT) when one is given)."""
  path, _, argument = spec.partition(":")
  if not os.path.isfile(path):
    fail(f"config file {path!r} not found (run from the repository root, or give its path)")
  path = os.path.abspath(path)
  # Config files import `configs.default`: the folder holding configs/ must be importable.
  root = os.path.dirname(os.path.dirname(path))
  if root not in sys.path:
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location("_dcrn_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(argument) if argument else module.get_config()
  config.lock()
  return config


def unknown_override(config, argv: list[str]) -> str | None:
  """A message for the first --config.a.b=... whose key does not exist, else None."""
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    node, walked = config, "config"
    for key in arg[len("--config."):].split("=", 1)[0].split("."):
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (f"unknown config key {walked}.{key} in {arg}: {hint}valid keys of {walked}: "
                + ", ".join(sorted(keys)))
      node, walked = node[key], f"{walked}.{key}"
  return None


_SHORT_HELP = {"--help", "-h", "-?", "--helpshort"}
CONFIG_FIELDS = (
    "Config fields: every one, with what it does, is listed in configs/default.py; override any "
    "with --config.FIELD=VALUE. A config file's values: python -c \"from configs import "
    "video_gru; print(video_gru.get_config())\" (in the repository root).")
RUN_CONFIG_FIELDS = (
    "Config fields: this command reads the run's config from WORKDIR/config.json (every field "
    "the run was trained with); what each field does is listed in configs/default.py.")


def exit_on_help(argv: list[str], *, reads_config: bool = True) -> None:
  """With --help (-h, -?, --helpshort) or --helpfull: prints the command's usage (its docstring
  and flags; --helpfull: every library's flags too) and where a config's fields are listed, and
  exits 0, before any config or workdir is needed. reads_config: the command takes --config
  (else it reads a trained workdir's config)."""
  words = set(argv[1:])
  if not words & (_SHORT_HELP | {"--helpfull"}):
    return
  app.usage(shorthelp="--helpfull" not in words, writeto_stdout=True)
  print("\n" + (CONFIG_FIELDS if reads_config else RUN_CONFIG_FIELDS), flush=True)
  sys.exit(0)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with the config loaded once and mistakes reported in one line."""
  exit_on_help(argv)
  spec, rest = _config_arg(argv[1:])
  if spec is None:
    fail("--config=FILE is required, e.g. --config=configs/video_gru.py")
  config = load_config(spec)
  problem = unknown_override(config, rest)
  if problem:
    fail(problem)
  if "config" not in flags.FLAGS:
    # sys_argv: the overrides to define are read from it (sys.argv may hold other words).
    config_flags.DEFINE_config_dict("config", config, "The experiment config.",
                                    lock_config=True, sys_argv=[argv[0]] + rest)
  try:
    return flags.FLAGS([argv[0]] + rest)
  except flags.Error as e:
    fail(f"{' '.join(str(e).split())} (see --helpshort)")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(" ".join(str(e).split()))


def parse_plain_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing for our commands without --config (predict, export): a mistake is one
  `error:` line, not a usage screen."""
  exit_on_help(argv, reads_config=False)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{' '.join(str(e).split())} (see --helpshort)")


def quiet_libraries(verbose: bool) -> None:
  """Hides library log lines and warnings (shows them, with INFO logs, when verbose)."""
  if verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")  # TensorFlow's start-up notes shown too.
    logging.set_verbosity(logging.INFO)
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.ERROR)
  for name in ("jax", "orbax", "tensorflow", "absl"):
    py_logging.getLogger(name).setLevel(py_logging.ERROR)
  warnings.filterwarnings("ignore")


@contextlib.contextmanager
def user_errors(verbose: bool):
  """A UserError inside the block: one `error:` line, exit code 2 (its traceback if verbose);
  a Ctrl-C: its message, exit code 130."""
  try:
    yield
  except Interrupted as e:  # Ctrl-C with the work saved: not an error, but not a success.
    print(str(e), file=sys.stderr, flush=True)
    _exit_now(EXIT_INTERRUPTED)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr, flush=True)
    _exit_now(EXIT_INTERRUPTED)
  except UserError as e:
    if verbose:
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    _exit_now(EXIT_USER_ERROR)


def _exit_now(code: int):
  # After a failed checkpoint read TensorStore threads may still call into Orbax's closed event
  # loop and print harmless tracebacks: stderr goes to /dev/null, and the process ends without
  # interpreter teardown.
  sys.stdout.flush()
  os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
  os._exit(code)  # pylint: disable=protected-access
