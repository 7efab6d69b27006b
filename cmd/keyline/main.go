// Command keyline is the one Keyline binary: directory server, client,
// monitor, auditor and witness.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "keyline: not built yet")
	os.Exit(1)
}
