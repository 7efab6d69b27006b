// Package directory is the Keyline server: it validates signed account
// updates, sequences them into epochs, appends them to the log, maintains the
// VRF-keyed verifiable map, signs checkpoints and serves lookups with proofs.
package directory
