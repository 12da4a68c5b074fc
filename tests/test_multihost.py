"""Real multi-process runs on localhost: JAX's distributed runtime with CPU (gloo) collectives."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.data.name=synthetic", "--config.data.synthetic_shape=(3,16,16,1)",
        "--config.data.synthetic_num_examples=96", "--config.model.stem_stride=2",
        "--config.model.conv_features=(4,8)", "--config.model.embed_dim=16",
        "--config.model.hidden_size=16", "--config.batch_size=8", "--config.eval_batch_size=16",
        "--config.optim.warmup_steps=1", "--config.progress_bar=False"]

# One process of a run: trains, then saves every local replica of every parameter.
_WORKER = """
import sys, numpy as np, jax
sys.path.insert(0, {root!r})
from dcrn_jax import distributed, train
from configs import video_gru
num, pid = {num}, int(sys.argv[1])
if num > 1:
  distributed.initialize(coordinator_address="127.0.0.1:{port}", num_processes=num, process_id=pid)
config = video_gru.get_config()
for override in {overrides!r}:
  key, value = override[len("--config."):].split("=", 1)
  node = config
  *path, leaf = key.split(".")
  for part in path:
    node = node[part]
  node[leaf] = type(node[leaf])(eval(value)) if not isinstance(node[leaf], str) else value
state, metrics = train.fit(config, {workdir!r})
# The scalars only: an evaluation also returns per_class and confusion_matrix.
replicas = {{"metric:" + k: np.asarray(v) for k, v in metrics.items()
             if isinstance(v, (int, float, np.number))}}
for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
  for i, shard in enumerate(leaf.addressable_shards):
    replicas[f"{{jax.tree_util.keystr(path)}}@{{i}}"] = np.asarray(shard.data)
np.savez({out!r} + f".{{pid}}.npz", **replicas)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices_per_process):
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")


def _run_workers(tmp_path, name, num, devices, overrides):
  code = _WORKER.format(root=str(ROOT), num=num, port=_free_port(), overrides=overrides,
                        workdir=str(tmp_path / name), out=str(tmp_path / name))
  procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=_env(devices),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num)]
  for p in procs:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
  return [dict(np.load(tmp_path / f"{name}.{i}.npz")) for i in range(num)]


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_two_processes_agree_with_each_other_and_with_one_process(tmp_path):
  overrides = TINY + ["--config.num_train_steps=24", "--config.log_every_steps=8",
                      "--config.checkpoint_every_steps=12", "--config.eval_every_steps=0",
                      "--config.data.shard_by_process=False"]
  two = _run_workers(tmp_path, "two", num=2, devices=2, overrides=overrides)
  one = _run_workers(tmp_path, "one", num=1, devices=4, overrides=overrides)[0]

  # Each process holds 2 replicas of every (replicated) parameter; all 4 must be identical.
  names = sorted({k.rsplit("@", 1)[0] for k in one if not k.startswith("metric:")})
  assert len(names) > 4
  for name in names:
    replicas = [proc[f"{name}@{i}"] for proc in two for i in range(2)]
    for r in replicas[1:]:
      np.testing.assert_array_equal(replicas[0], r, err_msg=name)
    np.testing.assert_allclose(replicas[0], one[f"{name}@0"], rtol=1e-4, atol=1e-6, err_msg=name)

  # Only process 0 wrote the logs; the checkpoint both wrote restores in one 1-device process.
  records = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["split"] == "train"] == [8, 16, 24]
  r = subprocess.run([sys.executable, "-m", "dcrn_jax.main", f"--config={ROOT}/configs/video_gru.py",
                      f"--workdir={tmp_path / 'two'}", "--mode=eval", *TINY], cwd=ROOT,
                     env=_env(1), capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads((tmp_path / "two" / "eval.json").read_text())
  assert result["step"] == 24 and result["num_examples"] == 96
  # The same checkpoint scored by 2 processes (end of training) and by 1 (--mode=eval): the one
  # evaluation path gathers every process's rows, so the metrics agree.
  for proc in two:
    assert float(proc["metric:accuracy"]) == result["accuracy"]
    assert int(proc["metric:num_examples"]) == 96
    np.testing.assert_allclose(float(proc["metric:loss"]), result["loss"], rtol=1e-5)


def _launch(workdir, *extra):
  env = dict(os.environ, PYTHON=sys.executable, DEVICES_PER_PROCESS="2")
  return subprocess.Popen(
      ["bash", str(ROOT / "launch" / "local.sh"), "2", str(ROOT / "configs" / "video_gru.py"),
       str(workdir), *TINY, "--config.num_train_steps=400", "--config.log_every_steps=5",
       "--config.checkpoint_every_steps=1000", "--config.eval_every_steps=0", *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True)


@pytest.mark.slow  # Long end-to-end run, left out of the default suite (-m slow runs it).
def test_sigterm_saves_an_agreed_step_and_the_same_command_resumes(tmp_path):
  workdir = tmp_path / "run"
  job = _launch(workdir)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert job.poll() is None, job.communicate()[0][-3000:]
    assert time.time() < deadline, "the job did not start training in time"
    time.sleep(0.5)
  # Like a scheduler preempting one host: SIGTERM reaches process 1 only.
  worker = subprocess.run(["pgrep", "-f", "--", f"--workdir={workdir} .*--process_id=1"],
                          capture_output=True, text=True).stdout.split()
  assert len(worker) == 1
  os.kill(int(worker[0]), signal.SIGTERM)
  out, _ = job.communicate(timeout=300)
  assert job.returncode == 0, out[-3000:]
  line = [x for x in out.splitlines() if x.startswith("preempted (SIGTERM)")]
  assert line, out[-3000:]
  step = int(line[0].split("at step ")[1].split(";")[0])
  assert 0 < step < 400
  assert sorted(int(s) for s in os.listdir(workdir / "checkpoints")) == [step]
  log1 = (workdir / "logs" / "process_1.log").read_text()
  assert "Traceback" not in log1

  again = _launch(workdir)
  out, _ = again.communicate(timeout=600)
  assert again.returncode == 0, out[-3000:]
  assert f"resuming from step {step}" in out
  assert "[train] step 400/400" in out
