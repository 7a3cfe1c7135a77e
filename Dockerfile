# Herald as a container: a static binary on a distroless base, running as a
# non-root user, with its SQLite file on a volume and a health check.
#
#   docker build -t herald .
#   docker run -p 8080:8080 -v herald-data:/data \
#     -e HERALD_TOKEN_SECRET -e HERALD_API_KEY herald
#
# HERALD_ENV=production is set: the container refuses to start without its
# secrets instead of falling back to dev mode.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=container
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/herald ./cmd/herald \
 && mkdir -p /out/data

# distroless/static has no shell and no package manager: the image is the
# binary, CA certificates (for a JWKS URL) and time zone data.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /herald
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV HERALD_ENV=production \
    HERALD_ADDR=:8080 \
    HERALD_DB=/data/herald.db \
    HERALD_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
# No curl in the image: the binary probes its own /readyz.
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 CMD ["/herald", "health", "http://127.0.0.1:8080/readyz"]
# SIGTERM drains (HERALD_DRAIN_TIMEOUT, 10s by default, plus 1s): give
# "docker stop -t 15" or a longer terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/herald"]
CMD ["serve"]
