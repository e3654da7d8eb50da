# gitconf: the CLI and the reconcile daemon.
#   docker build -t gitconf .
#   docker run --rm gitconf validate /repo            (mount the config repository at /repo)
#   docker run -p 8080:8080 gitconf daemon --repo https://github.com/acme/config \
#       --listen 0.0.0.0:8080 --etcd etcd:2379
# Base pinned by exact tag (3.11.15 on Debian 12); pin the digest too where the registry is
# reachable: docker buildx imagetools inspect python:3.11.15-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gitconf ./gitconf
RUN python -m venv /opt/gitconf \
 && /opt/gitconf/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
# git: the daemon and every command read the config repository with git.
# Versions are not pinned: Debian's security archive replaces a package version when it
# updates it, so a pinned version stops installing; the base tag fixes the release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 gitconf \
 && useradd --system --uid 10001 --gid gitconf --home-dir /home/gitconf --create-home \
      --shell /usr/sbin/nologin gitconf \
 && install -d -o gitconf -g gitconf /var/cache/gitconf
COPY --from=build /opt/gitconf /opt/gitconf
ENV PATH=/opt/gitconf/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GITCONF_CACHE_DIR=/var/cache/gitconf
USER 10001:10001
WORKDIR /home/gitconf
EXPOSE 8080
# /healthz of `gitconf daemon --listen 0.0.0.0:8080` (curl is not in the slim image)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('GITCONF_HEALTHCHECK_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]
ENTRYPOINT ["gitconf"]
CMD ["daemon", "--help"]
