#!/usr/bin/env bash
# Reproduce the Cora-ML comparison (localized + collective MILP vs isotropic sparse smoothing vs
# isotropic variance-constrained) with one command:
#   bash examples/reproduce_cora_ml.sh ../shared/data [OUT_DIR]
# Then draw the plots: lrsjax-report OUT_DIR/results
set -euo pipefail
DATA_DIR=${1:?usage: reproduce_cora_ml.sh DATA_DIR [OUT_DIR]}
OUT_DIR=${2:-lrsjax_runs/cora_ml}
lrsjax-certify --task=graph --dataset=cora_ml --data_dir="$DATA_DIR" --model=appnp \
  --num_clusters=5 --n0=200 --n=2000 --max_additions=5 --max_deletions=40 --deletion_step=1 \
  --mode=milp --out_dir="$OUT_DIR"
lrsjax-report "$OUT_DIR/results" --out_dir="$OUT_DIR/plots"
