# syntax=docker/dockerfile:1
#
# rowpipe images: one target per service, all from this file.
#
#   docker build --target writer   -t rowpipe/writer:$VERSION   --build-arg VERSION=$VERSION .
#   docker build --target api      -t rowpipe/api:$VERSION      --build-arg VERSION=$VERSION .
#   docker build --target ingester -t rowpipe/ingester:$VERSION --build-arg VERSION=$VERSION .
#   docker build --target stack    -t rowpipe/stack:$VERSION    --build-arg VERSION=$VERSION .
#
# The binaries are static (CGO_ENABLED=0), built with -trimpath and stamped with
# VERSION (main.version). The runtime base is distroless/static: no shell, no
# package manager, uid/gid 65532. No key, password or token is ever put in an
# image: keys come at run time (API_KEYS from an env file, API_KEYS_FILE from a
# mounted Kubernetes Secret). deploy/dockerfile_test.go keeps this file true.

ARG GO_VERSION=1.26.8

# ---- build: the go.work workspace, module downloads in their own layer ------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local

# Only the module files first, so that `go mod download` is a cached layer that
# changes only when a go.mod or go.sum does. The deploy module (tests of the
# deployment files, with heavy dependencies) and the bench module (the
# benchmark suite) are not part of any image: they are dropped from the
# workspace here and excluded by .dockerignore.
COPY go.work go.work.sum* ./
COPY pkg/schema/go.mod pkg/schema/go.sum* pkg/schema/
COPY pkg/svc/go.mod pkg/svc/go.sum* pkg/svc/
COPY services/ingester/go.mod services/ingester/go.sum* services/ingester/
COPY services/writer/go.mod services/writer/go.sum* services/writer/
COPY services/api/go.mod services/api/go.sum* services/api/
COPY services/stack/go.mod services/stack/go.sum* services/stack/
RUN go work edit -dropuse=./deploy -dropuse=./bench && go mod download

COPY pkg/ pkg/
COPY services/ services/

ARG VERSION=dev
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out/data && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./services/ingester ./services/writer ./services/api ./services/stack

# ---- runtime: distroless static, non-root ------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.version="${VERSION}"
# An empty /data owned by 65532: a fresh Docker named volume mounted there takes
# this owner, so the non-root writer can write to it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532

FROM runtime AS ingester
LABEL org.opencontainers.image.title="rowpipe-ingester"
COPY --from=build /out/ingester /usr/local/bin/ingester
ENTRYPOINT ["/usr/local/bin/ingester"]

FROM runtime AS writer
LABEL org.opencontainers.image.title="rowpipe-writer"
COPY --from=build /out/writer /usr/local/bin/writer
ENV DATA_DIR=/data
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/writer"]

FROM runtime AS api
LABEL org.opencontainers.image.title="rowpipe-api"
COPY --from=build /out/api /usr/local/bin/api
ENV DATA_DIR=/data
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/api"]

# The default target (`docker build .`): the all-in-one process. To reach its
# NATS from outside the container (-p 4222:4222) set NATS_LISTEN=0.0.0.0:4222
# and NATS_ADMIN_PASSWORD / NATS_INGESTER_PASSWORD: the stack refuses a
# non-loopback NATS_LISTEN without credentials (NATS_AUTH=off overrides).
FROM runtime AS stack
LABEL org.opencontainers.image.title="rowpipe-stack"
COPY --from=build /out/stack /usr/local/bin/stack
ENV DATA_DIR=/data
EXPOSE 5000 4222
ENTRYPOINT ["/usr/local/bin/stack"]
