# vendorwatch: one image for the worker, beat, migrations and the console (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 vendorwatch \
    && useradd --system --uid 10001 --gid vendorwatch --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin vendorwatch

# Copy only what the package is built from: a bare `COPY . .` would also take .venv/, var/ and a local .env.
# Keep this list in step with [tool.setuptools] packages in pyproject.toml.
COPY pyproject.toml README.md /src/
COPY config /src/config
COPY worker /src/worker
COPY tasks /src/tasks
COPY feeds /src/feeds
COPY pulse /src/pulse
COPY intake /src/intake
COPY storage /src/storage
COPY alerts /src/alerts
COPY digest /src/digest
# The code lives in site-packages, owned by root; the source tree is not kept in the image.
RUN pip install /src && rm -rf /src

WORKDIR /app
# The sample configuration, so the image runs on its own; docker-compose.yml mounts ./config over it.
COPY config/*.yaml /app/config/
# /app is the working directory (Celery beat may keep files there); /data holds the inbox, archive and
# quarantine. Created here so a new named volume starts out owned by the app user.
RUN mkdir -p /data/inbox && chown vendorwatch:vendorwatch /app && chown -R vendorwatch:vendorwatch /data

ENV VENDORWATCH_CONFIG=/app/config \
    VENDORWATCH_DATA_DIR=/data
VOLUME ["/data"]

USER vendorwatch
CMD ["vendorwatch", "worker"]
