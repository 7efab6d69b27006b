// Package log is Keyline's append-only Merkle log.
//
// The log is an RFC 6962 Merkle tree (hashing from
// github.com/transparency-dev/merkle) whose leaves are the canonical encodings of
// AccountUpdate and EpochRecord (see leaf.go and docs/protocol.md). It is kept by
// a Backend — embedded (a pure-Go KV store on local disk) or Trillian — and
// published as C2SP tlog-checkpoint signed notes, one per epoch.
//
// This package depends on no other Keyline package: account payloads are
// opaque bytes here.
package log

import "context"

// Backend stores the leaves of one log and answers proofs about them.
//
// Implementations must be safe for concurrent use. Append is the only
// mutating call; Keyline's sequencer is the log's single writer.
type Backend interface {
	// Append appends leaves, in order, and returns the index of the first.
	// It returns only once the leaves are durable: after a crash every
	// acknowledged leaf is present at the index that was returned.
	Append(ctx context.Context, leaves [][]byte) (first uint64, err error)

	// Size returns the number of leaves appended so far.
	Size(ctx context.Context) (uint64, error)

	// Entries returns leaves [start, end). It fails if end > Size.
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)

	// RootHash returns the RFC 6962 root of the tree of the first size leaves.
	RootHash(ctx context.Context, size uint64) ([]byte, error)

	// InclusionProof returns the RFC 9162 inclusion proof for leaf index in
	// the tree of the given size.
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)

	// ConsistencyProof returns the RFC 9162 consistency proof between the
	// trees of sizes oldSize and newSize.
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error)

	// Close releases the backend's resources.
	Close() error
}
