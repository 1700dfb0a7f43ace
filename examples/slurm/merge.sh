#!/bin/bash
# Submits the shard array and the merge that waits for it:
#   ./merge.sh N INPUT WORK
# e.g. ./merge.sh 16 /shared/grads/ /shared/gradtail-run
set -euo pipefail
N=${1:?number of shards} INPUT=${2:?input} WORK=${3:?shared work folder}
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array=0-$((N - 1)) \
  --export=ALL,N="$N",INPUT="$INPUT",WORK="$WORK" "$here/shard.sbatch")
sbatch --dependency=afterok:"$array" --export=ALL,WORK="$WORK" "$here/merge.sbatch"
echo "shards: job $array (tasks 0-$((N - 1))); results in $WORK/results once the merge ran"
