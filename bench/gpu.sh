#!/usr/bin/env bash
# Every GPU figure of bench/README.md in one go, for a GPU host that has torch but not this
# project installed: `bash bench/gpu.sh LOG_DIR`. Each benchmark's output is kept in LOG_DIR;
# the COCO-5k end-to-end run goes last, under a time limit, so a slow run costs only itself.
set -uo pipefail
log_dir="${1:?usage: bench/gpu.sh LOG_DIR}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
# The import names pyproject.toml gives plugins/ and tasks/, without installing the project.
links="$(mktemp -d)"
ln -s "$repo/plugins" "$links/harness_plugins"
ln -s "$repo/tasks" "$links/harness_tasks"
export PYTHONPATH="$repo:$links${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
cd "$repo/bench"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$log_dir/gpu.txt"
python3 bench_itm.py --breakdown --reference-images 16 2>&1 | tee "$log_dir/itm.log"
python3 bench_itm.py --text-lengths coco --reference-images 16 2>&1 | tee "$log_dir/itm_coco_lengths.log"
python3 bench_caption.py 2>&1 | tee "$log_dir/caption.log"
python3 bench_capfilt.py 2>&1 | tee "$log_dir/capfilt.log"
timeout "${E2E_LIMIT:-300}" python3 bench_retrieval_e2e.py 2>&1 | tee "$log_dir/retrieval_e2e.log"
