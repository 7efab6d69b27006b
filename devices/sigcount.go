package devices

import (
	"crypto/ed25519"
	"sync/atomic"
)

// signaturesVerified counts the calls of verifySignature.
var signaturesVerified atomic.Uint64

// verifySignature is ed25519.Verify, counted: every Ed25519 signature this
// package checks goes through it.
func verifySignature(pub, msg, sig []byte) bool {
	signaturesVerified.Add(1)
	return ed25519.Verify(pub, msg, sig)
}

// SignaturesVerified returns how many Ed25519 signatures this package has
// verified in this process (valid or not), for benchmarks that report cost
// per signature (e.g. the auditor's signatures per log entry).
func SignaturesVerified() uint64 { return signaturesVerified.Load() }
