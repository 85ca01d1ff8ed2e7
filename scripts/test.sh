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
uv run headwater tools build >/dev/null || echo "warning: tool images did not build" >&2
uv run headwater image build >/dev/null || echo "warning: project image did not build" >&2
exec uv run pytest "$@"
