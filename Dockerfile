# One image for every role (migrate, worker, beat, webhooks, flower, sandbox): the command picks
# the role. It holds the installed wheel and nothing else: no source tree, no configuration and
# no sandbox defaults. docker-compose.yml mounts the configuration at SYNC_CONFIG_DIR and a
# volume at SYNC_DATA_DIR, which the image's own user owns.

# The wheel, built from exactly these files (tests/e2e/test_installed_wheel.py builds it so too).
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY sync_pipeline ./sync_pipeline
COPY workers ./workers
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SYNC_DATA_DIR=/data SYNC_CONFIG_DIR=/etc/sync_pipeline
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /data sync \
    && mkdir -p /data /etc/sync_pipeline \
    && chown sync:sync /data
# A new named volume mounted at /data starts as a copy of this directory, owner included.
USER sync
WORKDIR /data
ENTRYPOINT ["syncctl"]
CMD ["--help"]
