FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# Editable, so alembic/ and alembic.ini stay beside the code that finds them.
RUN pip install --no-cache-dir --no-deps -e .
USER nobody
CMD ["autoforge", "--help"]
