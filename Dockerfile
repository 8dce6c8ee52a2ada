# One image for every edgebus process: docker-compose.yml and k8s/ run it with the same
# commands `edgebus up` runs (python -m services.<name>, nats-server, containerd).
# BASE_IMAGE: any Debian bookworm image with Python 3.11 first on PATH (a machine without a
# registry builds one offline: edgebus.testing.docker.Engine.ensure_base_image).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends containerd runc busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml setup.py constraints.txt README.md ./
# the dependencies first, in a layer of their own: a change to the sources rebuilds only what follows
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY edgebus ./edgebus
COPY services ./services
COPY examples ./examples
RUN pip install --no-cache-dir --no-deps -c constraints.txt .

# The lab's OCI images (busybox, and the pod sandbox image), built offline: no registry needed.
RUN python -m edgebus.images /opt/edgebus/images

ENV PYTHONUNBUFFERED=1
EXPOSE 4222 7422 1883 8080 9090 10550
