#!/usr/bin/env bash
# The test command: installs what it needs, starts the real local services, runs the suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# Start every local service; the suite itself reports (and under CI=true fails) what is missing.
uv run headwater services up || echo "warning: some services did not start (see above)" >&2
uv run headwater services status
# Images the container and work-pool tests run (built locally on the base image; cached layers
# make a rebuild take seconds).
build_log="$(mktemp)"
for what in "tools build" "image build"; do
    # shellcheck disable=SC2086
    uv run headwater $what >"$build_log" 2>&1 \
        || { tail -20 "$build_log" >&2; echo "warning: headwater $what failed" >&2; }
done
rm -f "$build_log"
exec uv run pytest "$@"
