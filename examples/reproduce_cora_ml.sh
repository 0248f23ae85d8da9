#!/usr/bin/env bash
# Reproduce the Cora-ML comparison (localized + collective MILP vs isotropic sparse smoothing vs
# isotropic variance-constrained) with one command:
#   bash examples/reproduce_cora_ml.sh ../shared/data [OUT_DIR] [--NAME=VALUE ...]
# Extra flags go to lrsjax-certify after the defaults below, so they override them
# (e.g. --n=500 --time_limit_s=5 for a quick run). Rerunning the same command resumes.
# Then draw the plots again with: lrsjax-report OUT_DIR
set -euo pipefail
DATA_DIR=${1:?usage: reproduce_cora_ml.sh DATA_DIR [OUT_DIR] [--NAME=VALUE ...]}
shift
OUT_DIR=lrsjax_runs/cora_ml
if [[ $# -gt 0 && $1 != -* ]]; then
  OUT_DIR=$1
  shift
fi
lrsjax-certify --task=graph --dataset=cora_ml --data_dir="$DATA_DIR" --model=appnp \
  --num_clusters=5 --n0=200 --n=2000 --max_additions=5 --max_deletions=40 --deletion_step=1 \
  --mode=milp --out_dir="$OUT_DIR" "$@"
lrsjax-report "$OUT_DIR" --out_dir="$OUT_DIR/plots"
