#!/usr/bin/env bash
# N processes of one JAX program on this machine (CPU devices, gloo collectives): the same
# multi-host code path as a cluster, for trying and testing it on one box.
#
#   bash launch/local.sh 2 configs/video_gru.py runs/local2 [--config.batch_size=64 ...]
#
# Edit nothing; optional environment: DEVICES_PER_PROCESS (CPU devices each process gets,
# default 1), PORT (coordinator port, default: a free one), PYTHON (default: python).
# Process 0 prints to this terminal; process i>0 logs to WORKDIR/logs/process_<i>.log.
# Ctrl-C or SIGTERM is passed to every process as SIGTERM: they agree on a step, save a
# checkpoint there and exit; the same command resumes.
set -euo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: bash launch/local.sh NUM_PROCESSES CONFIG WORKDIR [extra flags...]" >&2
  exit 2
fi
num="$1"; config="$2"; workdir="$3"; shift 3
python="${PYTHON:-python}"
per_process="${DEVICES_PER_PROCESS:-1}"
port="${PORT:-$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
mkdir -p "$workdir/logs"

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap stop INT TERM

for ((i = 0; i < num; i++)); do
  cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$per_process"
       "$python" -m dcrn_jax.main "--config=$config" "--workdir=$workdir"
       "--coordinator_address=127.0.0.1:$port" "--num_processes=$num" "--process_id=$i" "$@")
  if [ "$i" -eq 0 ]; then
    "${cmd[@]}" &
  else
    "${cmd[@]}" >"$workdir/logs/process_$i.log" 2>&1 &
  fi
  pids+=("$!")
done

set +e
status=0
for pid in "${pids[@]}"; do
  while true; do
    wait "$pid"; rc=$?
    # A trapped signal ends `wait` early (rc > 128) while the process still runs: wait again.
    kill -0 "$pid" 2>/dev/null || break
  done
  [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc
done
exit "$status"
