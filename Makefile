# `make test` is the one command that runs every test (see README).
.PHONY: test unit serve generate build wasm
test:
	./scripts/test.sh

unit:
	go test -race ./...

serve:
	go run ./cmd/keyline serve

generate:
	./scripts/generate.sh

# build embeds the WebAssembly verifier (scripts/build-wasm.sh) in ./keyline.
build: wasm
	go build -o keyline ./cmd/keyline

wasm:
	./scripts/build-wasm.sh
