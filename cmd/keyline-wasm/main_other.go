//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "keyline-wasm runs in a browser: build it with GOOS=js GOARCH=wasm (scripts/build-wasm.sh)")
	os.Exit(2)
}
