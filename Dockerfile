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

# The services never run with privileges. The entrypoint starts as root only to read who
# owns the mounted data folder, becomes that UID:GID (so every file chute writes there
# belongs to the folder's owner, whoever it is) and drops every capability; see
# docker/entrypoint.sh. `chute` (a system UID, no login) owns /data when nothing is
# mounted there, as for the api.
RUN useradd --system --no-create-home --shell /usr/sbin/nologin chute \
    && mkdir -p /data \
    && chown chute:chute /data \
    && install -m 755 docker/entrypoint.sh /usr/local/bin/chute-entrypoint

ENV CHUTE_DATA_DIR=/data
EXPOSE 8080 9100
ENTRYPOINT ["/usr/local/bin/chute-entrypoint"]
CMD ["python", "-m", "api"]
