#!/bin/bash
# The whole `jointnas fine` command, two checkouts in turn with `import torch` between them:
#   scripts/bench_fine_command.sh BEFORE_TREE AFTER_TREE [ROUNDS]
# Each round runs `jointnas fine --budget 600MFLOPs --json --no-progress` in an empty directory
# under /usr/bin/time (wall, user, system seconds) and reads the search's scored-per-second.
set -eu
before=$(realpath "$1"); after=$(realpath "$2"); rounds=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
run() {  # tree -> "wall user sys (scored per-second)"
  /usr/bin/time -o "$work/t" -f "%e %U %S" env OMP_NUM_THREADS=1 PYTHONPATH="$1" \
    python -m jointnas fine --budget 600MFLOPs --json --no-progress > "$work/out.json" 2>/dev/null
  echo "$(cat "$work/t") ($(python -c "import json, sys; s = json.load(open(sys.argv[1]))['search']; \
print(s['scored'], round(s['scored_per_second']))" "$work/out.json"))"
}
echo "load average $(cut -d' ' -f1 /proc/loadavg), $(date -u)"
for r in $(seq "$rounds"); do
  b=$(run "$before")
  /usr/bin/time -o "$work/t" -f "%e %U %S" python -c "import torch"
  t=$(cat "$work/t")
  a=$(run "$after")
  echo "round $r | before: $b | import torch: $t | after: $a"
done
