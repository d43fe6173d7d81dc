# The AutoForge Jobs image: one image for the API, workers, beat, Flower and the CLI.
# Base pinned to a patch release; rebuild to pick up security fixes on purpose.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/autoforge

# An unprivileged user that owns only the data folder (backups' work files, local
# backups); the code stays root's and read-only to the processes.
RUN groupadd --system --gid 10001 autoforge \
    && useradd --system --uid 10001 --gid autoforge --home-dir /var/lib/autoforge \
       --shell /usr/sbin/nologin autoforge \
    && install -d -o autoforge -g autoforge -m 0750 /var/lib/autoforge /var/lib/autoforge/backups

WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# .dockerignore keeps secrets (.env*), local state (data/), the venv and .git out.
COPY . .
# Editable, so alembic/ and alembic.ini stay beside the code that finds them.
RUN pip install --no-cache-dir --no-deps -e .

USER autoforge
VOLUME ["/var/lib/autoforge"]
CMD ["autoforge", "--help"]
