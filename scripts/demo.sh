#!/usr/bin/env bash
# The whole job on embedded defaults, offline: procedural pictures and tiny local models go through
# crawl (zip import) → filter → caption → train → sample, and the run's report is written.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GHIBLI_DATA_DIR="${GHIBLI_DATA_DIR:-data}"
exec .venv/bin/ghibli-lora pipeline demo "$@"
