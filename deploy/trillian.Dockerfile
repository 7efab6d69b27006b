# Trillian's trillian_log_server, trillian_log_signer and createtree, built
# from Trillian's own module at TRILLIAN_VERSION (keep it equal to the
# version in Keyline's go.mod). Build context: anything (nothing is copied).
ARG GO_IMAGE=golang:1.26-bookworm
FROM ${GO_IMAGE} AS build
ARG TRILLIAN_VERSION=v1.8.0
RUN GOBIN=/out CGO_ENABLED=0 go install \
	github.com/google/trillian/cmd/trillian_log_server@${TRILLIAN_VERSION} \
	github.com/google/trillian/cmd/trillian_log_signer@${TRILLIAN_VERSION} \
	github.com/google/trillian/cmd/createtree@${TRILLIAN_VERSION}

FROM debian:bookworm-slim
RUN useradd --system --uid 10002 trillian \
	&& mkdir /config && chown trillian /config
COPY --from=build /out/ /usr/local/bin/
USER trillian
