# Slim, non-root image running `invitelink serve` (migrates, then serves). The same image runs
# `invitelink worker` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INVITELINK_VAR_DIR=/data

WORKDIR /app
# The migrations ship inside the installed package (invitelink.migrations), so the CLI works from any folder.
# constraints.txt pins every dependency to the versions CI tested.
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY migrations ./migrations
COPY src ./src
RUN pip install -c constraints.txt . \
    && rm -rf /app \
    && useradd --system --uid 10001 --home-dir /data --create-home invitelink
WORKDIR /data

USER invitelink
VOLUME ["/data"]
EXPOSE 8000
# The API's readiness; a container running `invitelink worker` serves no HTTP and overrides this (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
CMD ["invitelink", "serve", "--host", "0.0.0.0", "--port", "8000"]
