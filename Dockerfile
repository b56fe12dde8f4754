# The production image: one image for web (gunicorn), worker and beat (celery); docker-compose.yml
# chooses the command. Settings come from the environment (docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MIR_VAR_DIR=/var/lib/mir

RUN groupadd --system --gid 10001 mir \
    && useradd --system --uid 10001 --gid mir --home-dir /app --no-create-home --shell /usr/sbin/nologin mir

WORKDIR /app
# Requirements first: the dependency layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# collectstatic imports the production settings, which refuse to load without a real SECRET_KEY and
# MIR_ENCRYPTION_KEY: give it throwaway ones for this step only (it is not kept in the image; runtime needs its own).
RUN MIR_ENV=production ALLOWED_HOSTS=build.invalid \
    SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    MIR_ENCRYPTION_KEY="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
    python manage.py collectstatic --noinput \
    && mkdir -p /var/lib/mir /var/lib/mir-beat \
    && chown -R mir:mir /var/lib/mir /var/lib/mir-beat

USER mir
EXPOSE 8000
# No HEALTHCHECK here: the worker and beat run this image too. Compose probes web's /healthz.
CMD ["gunicorn", "reporting.wsgi:application", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "2", "--threads", "2", "--timeout", "30", "--access-logfile", "-"]
