// Package httpapi is the directory's HTTP server (`keyline serve --http`):
//
//   - the log as C2SP tlog-tiles at the root: /checkpoint, /tile/<L>/<N>,
//     /tile/entries/<N> (package log/tiles; every tile is checked against
//     the checkpoint's root before it is served);
//   - the read API as JSON: /v1/lookup/<user>, /v1/history/<user>,
//     /v1/checkpoint, /v1/consistency, /v1/entries, /v1/trust (package
//     verifier/jsonapi; the same bundles as gRPC);
//   - operations: /metrics (Prometheus), /healthz, /readyz;
//   - pages: / (transparency status) and /verify (looks a user up and
//     verifies everything in the browser with the WebAssembly verifier).
//
// It reads the directory only through its public read methods (a
// verifier.Source), so it serves any Source. A follower goroutine tails
// the log: it verifies each new checkpoint's log signature, syncs the tile
// hashes, and derives the log statistics (epochs, resets, witness
// cosignatures) that the metrics and the status page show. See docs/api.md
// and docs/operations.md.
package httpapi
