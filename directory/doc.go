// Package directory is the Keyline server: it validates signed account
// updates, sequences them into epochs, appends them to the log, maintains the
// VRF-keyed verifiable map, signs checkpoints and serves lookups with proofs.
//
// Open a Server with a Config (only DataDir is required), serve gRPC with
// Serve, or call it in process (Update, Reset, and the verifier.Source
// methods via Source). The log is the source of truth: on every start the
// map and account index are brought up to the log by replaying what they
// miss. docs/api.md documents the API, its errors and the data directory;
// docs/protocol.md the epochs, storage and recovery.
package directory
