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
exec uv run pytest "$@"
