// Package crashtest holds the tests that run a real `keyline serve` child
// process: the SIGKILL crash test (TestServeSIGKILL) and the flood benchmark
// (BenchmarkFlood). The package itself only builds and starts the binary
// (Build, Start); see docs/operations.md for what the tests assert and how
// to run the long variants.
package crashtest
