# One image for every role of infusion-monitor (compose: ingest, dashboard, simulator).
# The install step is the one scripts/test runs (pip install of the project from its source tree, after
# upgrading pip), without the editable flag and the test extras; tests/deploy/test_compose.py checks that.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    INFUSION_DATA_DIR=/data

WORKDIR /src
COPY . /src
RUN python -m pip install -q --upgrade pip \
 && python -m pip install -q . \
 && install -m 0755 deploy/check-secrets /usr/local/bin/check-secrets \
 && install -m 0644 deploy/healthcheck.py /usr/local/lib/infusion-healthcheck.py

# Run as an unprivileged user; /data (spool, alarm state, dashboard users) is the only writable place.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin infusion \
 && mkdir -p /data \
 && chown infusion:infusion /data
USER infusion
WORKDIR /data
VOLUME ["/data"]

# The ingest's /healthz on its HTTP port by default; the compose file points the dashboard at its own URL.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/infusion-healthcheck.py"]

# Refuse to start with missing or placeholder secrets (.env.example values), then run the role given as command.
ENTRYPOINT ["check-secrets", "--", "infusion-monitor"]
CMD ["--help"]
