#!/usr/bin/env bash
# Install what the tests need and run them: bash scripts/test.sh [pytest args]
# The suite runs one pytest-xdist worker per core (at most 8), a file per worker at a time
# (module fixtures are built once); tests/conftest.py gives each worker its share of the
# threads. FDRL_TEST_WORKERS=1 runs it in one process.
source "$(dirname "$0")/setup_env.sh" dev
workers=${FDRL_TEST_WORKERS:-$(python -c "import os; print(min(8, len(os.sched_getaffinity(0))))")}
if [ "$workers" -gt 1 ]; then
    python -m pytest -q --durations=15 -n "$workers" --dist loadfile "$@"
else
    python -m pytest -q --durations=15 "$@"
fi
