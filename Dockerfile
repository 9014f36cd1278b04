# One image for every role (worker, beat, flower, migrate): the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY sync_pipeline ./sync_pipeline
COPY workers ./workers
COPY config ./config
RUN pip install --no-cache-dir . && useradd --system --uid 10001 sync
USER sync
ENTRYPOINT ["syncctl"]
CMD ["--help"]
