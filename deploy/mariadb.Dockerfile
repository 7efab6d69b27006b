# MariaDB with Trillian's MySQL schema (storage/mysql/schema/storage.sql of
# Trillian at TRILLIAN_VERSION, taken from the Go module, not copied into this
# repository). The official image runs /docker-entrypoint-initdb.d/*.sql in
# MARIADB_DATABASE on the first start with an empty data directory.
ARG GO_IMAGE=golang:1.26-bookworm
FROM ${GO_IMAGE} AS schema
ARG TRILLIAN_VERSION=v1.8.0
RUN go mod download github.com/google/trillian@${TRILLIAN_VERSION} \
	&& cp "$(go env GOMODCACHE)/github.com/google/trillian@${TRILLIAN_VERSION}/storage/mysql/schema/storage.sql" /storage.sql

FROM mariadb:10.11
COPY --from=schema /storage.sql /docker-entrypoint-initdb.d/10-trillian-storage.sql
