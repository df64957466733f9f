#!/usr/bin/env bash
# Install what the tests need and run them: bash scripts/test.sh [pytest args]
source "$(dirname "$0")/setup_env.sh" dev
python -m pytest -q --durations=15 "$@"
