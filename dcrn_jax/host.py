"""Host-side speed settings: the C allocator, and XLA:CPU compile options for our jitted steps.

Both are measured by benchmarks/bench_recurrent.py (figures in benchmarks/RESULTS.md):

- `tune_malloc()`: glibc hands large blocks (above a threshold that starts at 128 KiB) straight
  back to the OS when they are freed and trims the heap top above another, so a train step can
  pay page faults again, every step, for its big activation buffers. Raising both thresholds to
  1 GiB keeps freed memory in the process for the next step (what tcmalloc/jemalloc do by
  default). The gain depends on the machine's memory system; on our 2-core VM it was large in
  some runs and within run-to-run noise in others. The cost: memory the process frees is not
  returned to the OS until it exits (the resident size stays at its peak).
  `python -m dcrn_jax.main` calls it at start; set DCRN_JAX_TUNE_MALLOC=0 to leave glibc as it
  is. A MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment is respected.
- `compiler_options()`: on the CPU backend, XLA's YNNPACK fusions are turned off for our
  steps (`xla_cpu_experimental_ynn_fusion_type=""`): convolutions and matmuls then go to XLA's
  other CPU kernels; measured side by side in benchmarks/RESULTS.md ("ours (dcrn_jax)" vs "ours with
  dcrn_jax.main's XLA options"). A compile option belongs to one `jax.jit`, so a layer cannot
  carry it into a user's own step; `xla_flags()` (part of `configure()`) puts the same option
  into XLA_FLAGS, where every jax.jit of the process finds it. Returned only where this jaxlib
  accepts the option (checked once by compiling a tiny function) and only on CPU; set
  DCRN_JAX_XLA_CPU_OPTIONS=0 to compile with XLA's defaults.
"""

import ctypes
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

_YNN = "xla_cpu_experimental_ynn_fusion_type"
CPU_COMPILER_OPTIONS = {_YNN: ""}
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_KEEP_BYTES = 1 << 30


def tune_malloc() -> bool:
  """Keeps freed memory in the process (glibc only). Returns whether the settings were made."""
  if os.environ.get("DCRN_JAX_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
    return False
  if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
    return False  # The user chose.
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # Not glibc (e.g. musl): nothing to do.
    return False
  # One arena: XLA's worker threads, which allocate a step's temporaries, then take blocks from
  # the main heap, where the thresholds above keep them. In a thread's own arena glibc maps any
  # block larger than 64 MiB afresh and unmaps it when freed, whatever the thresholds.
  arena = "MALLOC_ARENA_MAX" in os.environ or bool(mallopt(_M_ARENA_MAX, 1))
  return bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)) and bool(
      mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and arena


@functools.lru_cache(maxsize=None)
def compiler_options() -> dict:
  """XLA compile options for our jitted train/eval steps on this backend ({} = XLA defaults)."""
  if os.environ.get("DCRN_JAX_XLA_CPU_OPTIONS", "1") == "0" or jax.default_backend() != "cpu":
    return {}
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
        jnp.zeros((), jnp.float32)).compile()
  except Exception:  # pylint: disable=broad-except  # An XLA without this option: its defaults.
    return {}
  return dict(CPU_COMPILER_OPTIONS)


def _jaxlib_accepts(flag: str) -> bool:
  """Whether this jaxlib knows an XLA flag: asked of a child process, since XLA aborts a process
  whose XLA_FLAGS name a flag it does not know (and reads them only once, when JAX starts)."""
  env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
  code = "import jax; jax.numpy.zeros(()).block_until_ready()"
  try:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120,
                          check=False).returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False


def xla_flags() -> bool:
  """Puts `compiler_options()` into XLA_FLAGS, so that every `jax.jit` of the process compiles with
  them: a user's own step over our layers included. Only before JAX starts its backends (XLA reads
  XLA_FLAGS once, then); a flag the user already put in XLA_FLAGS, DCRN_JAX_XLA_CPU_OPTIONS=0 or
  a jaxlib that does not know the flag leave XLA_FLAGS as it is. Returns whether it was set."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  current = os.environ.get("XLA_FLAGS", "")
  if (os.environ.get("DCRN_JAX_XLA_CPU_OPTIONS", "1") == "0" or _YNN in current
      or xla_bridge.backends_are_initialized()):
    return False
  flag = f"--{_YNN}="
  if not _jaxlib_accepts(flag):
    return False
  os.environ["XLA_FLAGS"] = f"{current} {flag}".strip()
  return True


def configure() -> dict:
  """The process-wide settings that make training fast on CPU, in one call: for a program that
  imports the layers and jits its own step. Call it first, before JAX computes anything
  (threads created earlier keep their allocator arenas, and XLA reads its flags when it starts).
  Returns what was applied.

  It keeps freed memory in the process (`tune_malloc`): XLA:CPU allocates a step's temporaries
  as one block each time the step runs; without this the block (134 MB for a 16-frame 32x32
  ConvLSTM of 32 features, batch 8) is mapped afresh and page-faulted in on every step. And it
  compiles every jax.jit of the process with our XLA:CPU options (`xla_flags`): without them XLA
  hands the recurrences' per-step convolutions to YNNPACK, which ran them slower here.
  `python -m dcrn_jax.main` calls it at start. Measured: benchmarks/RESULTS.md.
  """
  return {"tune_malloc": tune_malloc(), "xla_flags": xla_flags()}
