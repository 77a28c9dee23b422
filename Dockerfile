# The distillwatch image: the monitor (`run`), the workers (`worker teacher|student`) and every
# other command. docker-compose.yml builds it once for all three services.
#   docker build -t distillwatch .                          # core (no torch)
#   docker build --build-arg EXTRAS=training -t distillwatch .   # + torch/transformers backends
FROM python:3.11-slim

ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DISTILLWATCH_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY evaluators evaluators
COPY streams streams
COPY training training
COPY simulator simulator
COPY distillwatch distillwatch
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
 && useradd --uid 10001 --create-home distillwatch \
 && mkdir -p /data && chown distillwatch /data

USER distillwatch
VOLUME /data
EXPOSE 8088
ENTRYPOINT ["distillwatch"]
CMD ["--help"]
