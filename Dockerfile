# syntax=docker/dockerfile:1
# Pacesetter's image: `pacesetter worker`, `pacesetter api`, `pacesetter staffing` … (see
# docker-compose.yml). Build: docker build -t pacesetter:local .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the engine compiled with mypyc (below); the runtime image needs none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/pacesetter
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a source change does not reinstall
# Prophet and friends: empty packages stand in for the sources in this layer.
COPY pyproject.toml README.md ./
RUN for p in services streams forecasting api pacesetter; do mkdir "$p" && touch "$p/__init__.py"; done \
 && /opt/pacesetter/bin/pip install '.[postgresql]' \
 && /opt/pacesetter/bin/pip uninstall -y pacesetter
COPY services services
COPY streams streams
COPY forecasting forecasting
COPY api api
COPY pacesetter pacesetter
RUN /opt/pacesetter/bin/pip install --no-deps . \
 && /opt/pacesetter/bin/pacesetter --help >/dev/null
# The engine compiled with mypyc beside the installed sources (services/figures/_native.py: about 1.5
# times as fast as Python); mypy builds it and is not needed to run it. Run from / so that
# the installed package, not /src, is the one compiled. The build fails if it did not compile.
RUN /opt/pacesetter/bin/pip install "mypy>=1.10" \
 && cd / \
 && /opt/pacesetter/bin/python -c 'import sys; from services.figures._native import main; sys.exit(main())' \
 && /opt/pacesetter/bin/python -c 'import sys, services.figures; sys.exit(0 if services.figures.NATIVE else "the engine did not compile")' \
 && /opt/pacesetter/bin/pip uninstall -y mypy

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 pacesetter \
 && useradd --system --uid 10001 --gid pacesetter --home-dir /var/lib/pacesetter \
      --shell /usr/sbin/nologin pacesetter \
 && mkdir -p /var/lib/pacesetter/history /var/lib/pacesetter/worker \
 && chown -R pacesetter:pacesetter /var/lib/pacesetter
COPY --from=build /opt/pacesetter /opt/pacesetter
# Named volumes mounted on /var/lib/pacesetter/* start with this ownership.
ENV PATH=/opt/pacesetter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PACESETTER_DATA_DIR=/var/lib/pacesetter/worker \
    PACESETTER_STORE_URL=sqlite:////var/lib/pacesetter/history/pacesetter.db
WORKDIR /var/lib/pacesetter
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["pacesetter"]
CMD ["--help"]
