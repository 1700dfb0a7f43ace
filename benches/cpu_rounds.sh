#!/usr/bin/env bash
# The CPU engine against numpy's ln pass, in interleaved rounds on the same machine: each round
# runs numpy's pass (benches/peers/numpy_ln_pass.py, best of 3, one thread), then every gradtail
# binary given, once each, with the fits and structure statistics off. Prints per tool the
# median, range and best of the wall times, the median CPU time and the peak RSS.
#
#   benches/cpu_rounds.sh [--rounds N] [--data FILE.npy] GRADTAIL [GRADTAIL ...]
#
# Without --data it writes /tmp/gradtail-b256.npy (256 × 10⁶ float32, SαS 1.7) with the first
# binary's `synth`. Virtual machines change speed from one minute to the next: compare tools
# only within one run of this script.
set -euo pipefail

rounds=10
data=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [--rounds N] [--data FILE.npy] GRADTAIL [GRADTAIL ...]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
if [[ -z "$data" ]]; then
  data=/tmp/gradtail-b256.npy
  [[ -f "$data" ]] || "$1" synth --alpha 1.7 --samples 256 --params 1000000 --seed 1 -q "$data"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for ((i = 1; i <= rounds; i++)); do
  OMP_NUM_THREADS=1 python3 "$here/peers/numpy_ln_pass.py" "$data" --repeat 3 >> "$work/numpy"
  for b in "$@"; do
    rm -rf "$work/out"
    /usr/bin/time -a -o "$work/times" -f "$b %e %U %S %M" \
      "$b" analyze "$data" --out "$work/out" --backend cpu -q \
      --no-fits --no-spectrum --no-powerlaw > /dev/null
  done
done

python3 - "$work" "$@" <<'PY'
import re, statistics as st, sys
work, binaries = sys.argv[1], sys.argv[2:]
np_walls = [float(re.search(r"([\d.]+) s", l).group(1)) for l in open(f"{work}/numpy") if "best of" in l]
floor = st.median(np_walls)
print(f"numpy ln pass, 1 thread: median {floor:.3f} s ({min(np_walls):.3f}-{max(np_walls):.3f}), best {min(np_walls):.3f} s, {len(np_walls)} rounds")
rows = [l.split() for l in open(f"{work}/times")]
for b in binaries:
    r = [list(map(float, x[1:])) for x in rows if x[0] == b]
    wall = [x[0] for x in r]
    cpu = st.median(x[1] + x[2] for x in r)
    rss = max(x[3] for x in r) / 1024
    print(f"{b}: median {st.median(wall):.3f} s ({min(wall):.3f}-{max(wall):.3f}, "
          f"{st.median(wall) / floor:.2f}x numpy), best {min(wall):.3f} s "
          f"({min(wall) / min(np_walls):.2f}x numpy's best), CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB")
PY
