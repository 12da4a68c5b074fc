"""benchmarks/accelerator_check.py: its --tiny mode on this CPU, its budget, and the marker
machinery it relies on (tests/without_tf, needs_tf)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "accelerator_check.py")
sys.path.insert(0, str(ROOT / "benchmarks"))

import accelerator_check  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run(*args, pythonpath=str(ROOT), timeout=600):
  env = dict(os.environ, PYTHONPATH=pythonpath)
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        env=env, timeout=timeout, check=False)


def test_every_case_builds_a_valid_config_and_on_device_is_set_only_where_it_exists():
  from dcrn_jax import train  # pylint: disable=g-import-not-at-top
  for case in accelerator_check.CASES:
    for tiny in (True, False):
      config = accelerator_check.make_config(case, "bfloat16", tiny, loop_steps=12)
      train.validate_config(config)
      assert config.model.dtype == "bfloat16" and config.num_train_steps == 12
      assert config.log_every_steps >= 2  # The first window starts after the compiling step.
      shown = accelerator_check.set_on_device(config, True)
      if "on_device" in config.data:
        assert shown == "True" and config.data.on_device is True
      else:
        assert shown == "n/a"
  full = accelerator_check.make_config("video_gru_b256", "float32", False, 240)
  assert full.batch_size == 256 and full.data.name == "synthetic"
  assert accelerator_check.make_config("convlstm_b32", "float32", False, 240
                                       ).model.convlstm_features == (64, 64)


def test_a_spent_budget_skips_every_case_and_the_tests_and_says_so(capsys):
  assert accelerator_check.main(["--tiny", "--budget", "0", "--test_seconds", "0.001"]) == 0
  out = capsys.readouterr().out
  skipped = re.findall(r"^skipped (\S+) (float32|bfloat16): ", out, re.M)
  assert skipped == [(c, d) for c in accelerator_check.CASES for d in accelerator_check.DTYPES]
  assert "skipped the tests" in out
  assert "| case | dtype |" in out and "fed %" in out


def test_unknown_cases_are_refused(capsys):
  with pytest.raises(SystemExit) as e:
    accelerator_check.parse_args(["--cases", "video_gru_b33"])
  assert e.value.code == 2
  assert "unknown case or dtype ['video_gru_b33']" in capsys.readouterr().err


@pytest.mark.slow  # ~1 minute on a busy 2-core CPU: two compiles, a checkpoint and an eval.
def test_tiny_run_prints_step_alone_loop_and_fed_percent():
  r = _run("--tiny", "--cases", "video_gru_b32", "--dtypes", "float32", "--test_seconds", "0")
  assert r.returncode == 0, r.stderr[-3000:]
  row = re.search(r"^\| video_gru_b32 \| float32 \| 4 \| synthetic \| (\S+) \| ([\d.]+) \| "
                  r"([\d.]+) \| ([\d.]+) \| (\d+) \|$", r.stdout, re.M)
  assert row, r.stdout
  alone, loop, fed = float(row[2]), float(row[3]), int(row[5])
  assert alone > 0 and loop > 0
  assert abs(fed - 100 * loop / alone) <= 1


def test_without_tf_blocks_tensorflow_in_the_process_and_its_children():
  code = ("import subprocess, sys\n"
          "try:\n  import tensorflow\nexcept ModuleNotFoundError as e:\n  print('blocked', e.name)\n"
          "r = subprocess.run([sys.executable, '-c', 'import tensorflow_datasets'],"
          " capture_output=True, text=True)\n"
          "print('child', r.returncode, 'ModuleNotFoundError' in r.stderr)\n"
          "import importlib.util\nprint('probe', importlib.util.find_spec('tensorflow'))\n"
          "import dcrn_jax.data, configs.default\nprint('dcrn_jax imports')\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "without_tf"),
                                                     str(ROOT)]))
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                     timeout=120, check=False)
  assert r.stdout.split("\n")[:4] == ["blocked tensorflow", "child 1 True", "probe None",
                                      "dcrn_jax imports"], r.stdout + r.stderr


def test_tf32_emulation_rounds_to_ten_mantissa_bits_and_the_pin_turns_it_off():
  sys.path.insert(0, str(ROOT / "tests"))
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tf32_emulation  # pylint: disable=g-import-not-at-top
  ulp = 2.0 ** -10
  x = np.float32([1 + ulp / 2, 1 + 1.5 * ulp, 1 + ulp / 2 + 2 ** -20, -3.0, 1e-30])
  want = np.float32([1.0, 1 + 2 * ulp, 1 + ulp, -3.0, np.float32(1e-30)])
  got = np.asarray(tf32_emulation.to_tf32(x))
  np.testing.assert_array_equal(got[:4], want[:4])
  assert abs(got[4] - want[4]) <= 1e-30 * ulp
  # Installed (in a subprocess: it patches JAX for the whole process), a default-precision dot
  # loses TF32's digits and a pinned one keeps float32's.
  code = ("import sys; sys.path.insert(0, 'tests'); import tf32_emulation, jax, numpy as np\n"
          "tf32_emulation.install()\n"
          "a = np.random.default_rng(0).standard_normal((64, 64)).astype('f4')\n"
          "ref = a.astype('f8') @ a.astype('f8')\n"
          "err = lambda: float(abs(np.asarray(jax.numpy.dot(a, a)) - ref).max())\n"
          "with jax.default_matmul_precision('highest'):\n  pinned = err()\n"
          "print(err() > 1e-3, pinned < 1e-4)\n")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                     timeout=120, check=False)
  assert r.stdout.strip() == "True True", r.stdout + r.stderr
