#!/usr/bin/env bash
# Fetch every official ImageNet-64 checkpoint (EDM teacher, three DMD2 students) into a folder.
# Usage: scripts/download_imagenet.sh [DEST]   (default: checkpoints). Rerun to resume; finished files are skipped.
set -euo pipefail
exec python -m visualizer download --all --dest "${1:-checkpoints}"
