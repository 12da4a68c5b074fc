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
  other CPU kernels; measured side by side in benchmarks/RESULTS.md ("ours (dcrn_jax)" vs "ours,
  dcrn_jax.main's XLA options"). A compile option belongs to one `jax.jit`, so a layer cannot
  carry it into a user's own step. Returned only where this jaxlib
  accepts the option (checked once by compiling a tiny function) and only on CPU; set
  DCRN_JAX_XLA_CPU_OPTIONS=0 to compile with XLA's defaults.
"""

import ctypes
import functools
import os
import sys

import jax
import jax.numpy as jnp

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
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


def configure() -> dict:
  """The process-wide settings that make training fast on CPU, in one call: for a program that
  imports the layers and jits its own step. Call it first, before JAX computes anything
  (threads created earlier keep their allocator arenas). Returns what was applied.

  It keeps freed memory in the process (`tune_malloc`). XLA:CPU allocates a step's temporaries
  as one block each time the step runs; without this the block (134 MB for a 16-frame 32x32
  ConvLSTM of 32 features, batch 8) is mapped afresh and page-faulted in on every step.
  `python -m dcrn_jax.main` calls it at start. Measured: benchmarks/RESULTS.md.
  """
  return {"tune_malloc": tune_malloc()}
