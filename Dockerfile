# The Headwater project image: flows, tasks, blocks and the CLI on Debian bookworm's Python 3.11.
# Built locally without any registry: `headwater image build` (docker build --network host)
# FROM the base image that `headwater services up` imports with debootstrap.
ARG BASE_IMAGE=headwater/debian-base:bookworm
FROM ${BASE_IMAGE}

# PEM certificates to trust while building, for builds behind a TLS-intercepting proxy
# (`headwater image build` passes the host's /usr/local/share/ca-certificates/*.crt).
ARG EXTRA_CA_CERTS=""

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/headwater \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# Debian bookworm's python3 is 3.11 (the project's requires-python).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && if [ -n "$EXTRA_CA_CERTS" ]; then \
         printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; \
       fi \
    && update-ca-certificates >/dev/null \
    && python3 -m venv /opt/venv \
    && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip install --no-cache-dir -q "uv>=0.4,<1"

WORKDIR /opt/headwater

# Dependencies first (their layer is reused while only the source changes), pinned by uv.lock.
COPY pyproject.toml uv.lock README.md ./
RUN SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
    && SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1 \
    uv pip install --no-cache --compile-bytecode -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY headwater ./headwater
COPY flows ./flows
COPY tasks ./tasks
COPY blocks ./blocks
COPY deployments ./deployments
COPY alembic.ini ./
RUN SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1 \
    uv pip install --no-cache --compile-bytecode --no-deps . \
    && rm -rf build \
    && useradd --create-home --uid 1000 headwater \
    && python -m compileall -q headwater flows tasks blocks deployments \
    && python -c "import flows.smoke, headwater.cli, prefect_docker, prefect_dask"

USER headwater
ENV HOME=/home/headwater
# Workers start flow runs with `prefect flow-run execute`; the CLI is `headwater`.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["headwater", "--help"]
