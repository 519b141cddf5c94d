# One image for every chute service; docker-compose.yml picks the module to run.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (what gets copied is limited by .dockerignore).
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf build

# Run as an unprivileged user. The UID defaults to 1000 so that a bind-mounted ./data
# owned by a typical host user is writable; override with --build-arg APP_UID=...
ARG APP_UID=1000
RUN useradd --create-home --uid "${APP_UID}" --shell /usr/sbin/nologin chute \
    && mkdir -p /data \
    && chown chute:chute /data
USER chute

ENV CHUTE_DATA_DIR=/data
EXPOSE 8080 9100
CMD ["python", "-m", "api"]
