#!/usr/bin/env bash
# The demo command: installs what it needs, starts the local services, runs all five capabilities.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
uv run headwater services up || echo "warning: some services did not start; the demo skips what needs them" >&2
uv run headwater tools build >/dev/null || echo "warning: tool images did not build" >&2
export PREFECT_API_URL=${PREFECT_API_URL:-http://127.0.0.1:4200/api}
exec uv run headwater demo "$@"
