# `make test` is the one command that runs every test (see README).
.PHONY: test unit serve generate
test:
	./scripts/test.sh

unit:
	go test -race ./...

serve:
	go run ./cmd/keyline serve

generate:
	./scripts/generate.sh
