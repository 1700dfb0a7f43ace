#!/usr/bin/env bash
# One run of gradtail's benchmarks on a GPU machine (made for a bare NVIDIA H100/H200 box: 16
# cores, NVIDIA driver, maybe no Rust toolchain, no Vulkan loader, no network beyond package
# registries). From the repository root, with OUT set to an output folder:
#
#     OUT=/tmp/out bash benches/device.sh            # 1024 × 4,000,000, f32 and bf16
#     OUT=/tmp/out bash benches/device.sh --small    # tiny sizes (or SMALL=1): for lavapipe
#
# It uses target/release/gradtail if present (else builds it with cargo, if there is one),
# unpacks the Vulkan loader from .gl/*.deb when the system has none (benches/fetch-gl-debs.sh
# downloads them), points VK_DRIVER_FILES at the NVIDIA driver when no GPU adapter shows up,
# then runs `gradtail info`, `gradtail bench` on both engines in f32 and in bf16 (with the
# device copy and upload ceilings measured in the same run), and the PyTorch peer
# (benches/peers/torch_pipeline.py) on CUDA when torch with CUDA imports. Writes
# $OUT/device.json (everything) and $OUT/device.md (a table), plus each step's raw output and
# device.log. Every step has a time limit; the whole run stays within BUDGET_S (default 465 s).
#
# Environment: SMALL=1, SAMPLES and PARAMS (other sizes), BUDGET_S, TORCH_INSTALL=0 (never
# try `pip install torch`),
# GRADTAIL_COMMIT (the commit to record when there is no .git), WGPU_BACKEND (default vulkan),
# VK_DRIVER_FILES (respected when set and the adapter it gives is usable).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

SMALL=${SMALL:-0}
for arg in "$@"; do
  case $arg in
    --small) SMALL=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "device.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/device.log") 2>&1
exec 3>&1 # the log, also from steps whose output goes to a file of their own

START=$(date +%s)
BUDGET_S=${BUDGET_S:-465}
if [ "$SMALL" = 1 ]; then
  K=64 P=20000 REPEAT=2 TORCH_REPEAT=2
else
  K=1024 P=4000000 REPEAT=3 TORCH_REPEAT=3
fi
K=${SAMPLES:-$K} P=${PARAMS:-$P}
: >"$OUT/notes.txt"
FAILED=0

note() { echo "NOTE: $*" >&3; echo "$*" >>"$OUT/notes.txt"; }
left() { echo $((START + BUDGET_S - $(date +%s))); }

# step NAME MAX_S CMD...: runs CMD under `timeout`, no longer than MAX_S nor past the budget.
step() {
  local name=$1 max=$2 l t s rc
  shift 2
  l=$(left)
  t=$((max < l - 10 ? max : l - 10))
  if ((t < 15)); then
    note "$name: skipped, the run's time budget ($BUDGET_S s) is spent"
    return 124
  fi
  echo "== $name (limit ${t} s)" >&3
  s=$(date +%s)
  timeout -k 5 "$t" "$@"
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - s)) s" >&3
  if ((rc == 124 || rc == 137)); then
    note "$name: stopped at its time limit (${t} s)"
  elif ((rc != 0)); then
    note "$name: failed (exit $rc)"
  fi
  return $rc
}

echo "gradtail device run, $(date -u +%Y-%m-%dT%H:%M:%SZ), small=$SMALL, K=$K P=$P"
COMMIT=${GRADTAIL_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $COMMIT"
  echo "host: $(uname -srm), $(nproc) cores, $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB RAM"}')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  if command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
  else
    echo "nvidia-smi: not found"
  fi
} | tee "$OUT/machine.txt"

# --- the binary ---------------------------------------------------------------------------
BIN=$PWD/target/release/gradtail
if [ -x "$BIN" ]; then
  echo "using the prebuilt $BIN"
elif command -v cargo >/dev/null; then
  step "cargo build --release" 300 cargo build --release --locked || FAILED=1
else
  note "no target/release/gradtail and no cargo: gradtail was not run (build the release binary elsewhere and bring it along)"
fi
[ -x "$BIN" ] || BIN=

# --- the Vulkan loader --------------------------------------------------------------------
# (grep without -q: with pipefail, a grep that stops early can fail the pipeline by SIGPIPE)
has_lib() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }
has_loader() { has_lib 'libvulkan\.so\.1 ' || [ -n "${GL_PREFIX_LIBS:-}" ]; }
if [ -n "$BIN" ] && ! has_loader; then
  debs=(.gl/*.deb)
  if [ -e "${debs[0]}" ]; then
    # Into / where we are root (files already there are kept: no system library is replaced),
    # else into a private prefix named by LD_LIBRARY_PATH.
    if [ "$(id -u)" = 0 ]; then root=/; else root=$PWD/.gl/root; mkdir -p "$root"; fi
    for f in "${debs[@]}"; do
      if command -v dpkg-deb >/dev/null; then
        dpkg-deb --fsys-tarfile "$f" | tar -x -C "$root" --skip-old-files
      else # no dpkg: a .deb is an ar archive around data.tar.{xz,zst,gz}
        member=$(ar t "$f" | grep '^data\.tar') &&
          case $member in
            *.xz) ar p "$f" "$member" | tar -x -J -C "$root" --skip-old-files ;;
            *.zst) ar p "$f" "$member" | tar -x --zstd -C "$root" --skip-old-files ;;
            *) ar p "$f" "$member" | tar -x -z -C "$root" --skip-old-files ;;
          esac
      fi || note "unpacking $f failed"
    done
    if [ "$root" = / ]; then
      ldconfig
    else
      GL_PREFIX_LIBS=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
      export LD_LIBRARY_PATH=$GL_PREFIX_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    echo "Vulkan loader unpacked from ${#debs[@]} packages in .gl/ into $root"
  else
    note "no Vulkan loader (libvulkan.so.1) and no .gl/*.deb to unpack (benches/fetch-gl-debs.sh fetches them)"
  fi
fi

# --- the adapter --------------------------------------------------------------------------
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan} NO_COLOR=1
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then XDG_RUNTIME_DIR=$(mktemp -d); export XDG_RUNTIME_DIR; fi
# A usable adapter: a real GPU on Vulkan; in small mode a CPU device (lavapipe) will do.
usable() {
  if [ "$SMALL" = 1 ]; then grep -q '^- .* \[vulkan / ' "$OUT/info.txt"
  else grep -Eq '^- .* \[vulkan / (DiscreteGpu|IntegratedGpu|VirtualGpu|Other)\]' "$OUT/info.txt"; fi
}
GPU=0
if [ -n "$BIN" ]; then
  step "gradtail info" 60 "$BIN" info >"$OUT/info.txt" 2>&1
  if ! usable; then
    icd=
    for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
      /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
      [ -f "$f" ] && icd=$f && break
    done
    if [ -z "$icd" ] && has_lib 'libGLX_nvidia\.so\.0'; then
      # The driver's Vulkan part is there but its manifest is not (some containers).
      icd=$OUT/nvidia_icd.json
      printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.3"}}\n' >"$icd"
      note "no nvidia_icd.json on this machine: wrote one naming libGLX_nvidia.so.0"
    fi
    if [ -n "$icd" ]; then
      export VK_DRIVER_FILES=$icd
      echo "no usable adapter: VK_DRIVER_FILES=$icd"
      step "gradtail info (NVIDIA driver)" 60 "$BIN" info >"$OUT/info.txt" 2>&1
    fi
  fi
  cat "$OUT/info.txt"
  if usable; then
    GPU=1
  else
    note "no usable GPU adapter (containers need NVIDIA_DRIVER_CAPABILITIES to include graphics): the GPU engine was not run"
    FAILED=1
  fi
fi
echo "vulkan: VK_DRIVER_FILES=${VK_DRIVER_FILES:-(unset)} WGPU_BACKEND=$WGPU_BACKEND" >>"$OUT/machine.txt"

# --- PyTorch ------------------------------------------------------------------------------
TORCH=0
torch_cuda() { python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; }
if ! command -v python3 >/dev/null; then
  note "no python3: the PyTorch peer and the summary files were skipped"
elif torch_cuda; then
  TORCH=1
elif [ "$SMALL" = 1 ]; then
  note "torch with CUDA does not import: the PyTorch peer was skipped (small mode never installs it)"
elif [ "${TORCH_INSTALL:-1}" = 0 ]; then
  note "torch with CUDA does not import and TORCH_INSTALL=0: the PyTorch peer was skipped"
else
  python3 -c 'import torch' 2>/dev/null && note "torch imports but sees no CUDA device"
  # Only if it is quick: a registry that does not answer fails within seconds.
  step "pip install torch" 150 python3 -m pip install --quiet --retries 1 --timeout 10 torch &&
    torch_cuda && TORCH=1
  [ "$TORCH" = 1 ] || note "torch with CUDA could not be installed and imported: the PyTorch peer was skipped"
fi

# --- the runs -----------------------------------------------------------------------------
bench() { # bench DTYPE
  local backends=cpu
  [ "$GPU" = 1 ] && backends=cpu,gpu
  step "gradtail bench $1 ($backends)" 200 "$BIN" bench --samples "$K" --params "$P" --dtype "$1" \
    --backends "$backends" --repeat "$REPEAT" --json "$OUT/bench-$1.json" >"$OUT/bench-$1.txt" 2>&1
  local rc=$?
  cat "$OUT/bench-$1.txt"
  ((rc == 0)) || FAILED=1
}
peer() { # peer DTYPE: at K × P, and at a quarter of P if that fails (memory)
  local p=$P
  for try in 1 2; do
    step "torch peer $1 at $K x $p" 120 python3 benches/peers/torch_pipeline.py --samples "$K" \
      --params "$p" --repeat "$TORCH_REPEAT" --dtype "$1" --json "$OUT/torch-$1.json" \
      >"$OUT/torch-$1.txt" 2>&1
    local rc=$?
    tail -5 "$OUT/torch-$1.txt"
    ((rc == 0)) && return 0
    ((rc == 124 || rc == 137)) && return 1
    p=$((P / 4))
  done
}
if [ "$GPU" = 1 ] && [ "$SMALL" != 1 ]; then
  # A few seconds at a tiny size first: a GPU engine that fails on this device then costs no
  # full-size run, and the CPU engine's full-size figures are still taken.
  if ! step "gradtail bench smoke (64 x 20000)" 90 "$BIN" bench --samples 64 --params 20000 \
    --backends cpu,gpu --repeat 1 --json "$OUT/bench-smoke.json" >"$OUT/bench-smoke.txt" 2>&1; then
    tail -20 "$OUT/bench-smoke.txt"
    note "the GPU engine failed at a tiny size (see bench-smoke.txt): full-size runs are CPU only"
    GPU=0
    FAILED=1
  fi
fi
if [ -n "$BIN" ]; then bench f32; fi
if [ "$TORCH" = 1 ]; then peer float32; fi
if [ -n "$BIN" ]; then bench bf16; fi
if [ "$TORCH" = 1 ]; then peer bfloat16; fi

# --- one JSON and one table ---------------------------------------------------------------
if command -v python3 >/dev/null; then
  python3 benches/device_summary.py "$OUT" "$SMALL" || { note "writing the summary failed"; FAILED=1; }
  [ -f "$OUT/device.md" ] && cat "$OUT/device.md"
fi
echo "device.sh: done in $(($(date +%s) - START)) s; results in $OUT"
exit $FAILED
