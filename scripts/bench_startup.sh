#!/bin/bash
# What a coarse run does before its first trial, two checkouts in turn:
#   scripts/bench_startup.sh BEFORE_TREE AFTER_TREE [ROUNDS]
# Per round and tree: importing the trainer and the mbconv family (what the driver and every
# worker import), and sampling the default 20,000-candidate pool, each in a fresh process.
set -eu
before=$(realpath "$1"); after=$(realpath "$2"); rounds=${3:-3}
imports='import time; t = time.perf_counter(); import jointnas.evaluation.trainer, jointnas.evaluation.evaluators; print(f"{time.perf_counter() - t:.2f}")'
pool='import time; from jointnas.catalog import load_space; from jointnas.space.pool import sample_pool; s = load_space("fbnetv3"); import scipy.stats; t = time.perf_counter(); sample_pool(s, 20000, seed=0); print(f"{time.perf_counter() - t:.2f}")'
cd "$(mktemp -d)"
echo "load average $(cut -d' ' -f1 /proc/loadavg), $(date -u)"
for r in $(seq "$rounds"); do
  line="round $r"
  for tree in "$before" "$after"; do
    i=$(OMP_NUM_THREADS=1 PYTHONPATH="$tree" python -c "$imports")
    p=$(OMP_NUM_THREADS=1 PYTHONPATH="$tree" python -c "$pool")
    line="$line | $(basename "$tree"): imports $i s, pool $p s"
  done
  echo "$line"
done
