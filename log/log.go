// Package log is Keyline's append-only Merkle log.
//
// The log is an RFC 6962 Merkle tree (hashing from
// github.com/transparency-dev/merkle) whose leaves are the canonical encodings of
// AccountUpdate and EpochRecord (see leaf.go and docs/protocol.md). It is kept by
// a Backend — embedded (a pure-Go KV store on local disk) or Trillian — and
// published as C2SP tlog-checkpoint signed notes, one per epoch (see
// checkpoint.go and Publish).
//
// This package depends on no other Keyline package: account payloads are
// opaque bytes here.
package log

import (
	"context"
	"errors"
)

// ErrRange is returned (wrapped) by a Backend when a requested index, size or
// range lies outside the current tree: Entries with start > end or end > Size,
// RootHash with size > Size, InclusionProof with index >= size or size > Size,
// ConsistencyProof with oldSize > newSize or newSize > Size.
var ErrRange = errors.New("log: out of range")

// ErrCorrupt is returned (wrapped) when stored log data does not match what
// it must be: a stored hash differs from the one recomputed from stored
// leaves, or a root is inconsistent with a signed checkpoint.
var ErrCorrupt = errors.New("log: stored data corrupt")

// Backend stores the leaves of one log and answers proofs about them.
//
// Implementations must be safe for concurrent use. Append is the only
// mutating call; Keyline's sequencer is the log's single writer.
//
// Hashes (roots and proof elements) are 32-byte SHA-256 RFC 6962 hashes.
// Errors about indices or sizes outside the tree wrap ErrRange.
type Backend interface {
	// Append appends leaves, in order, and returns the index of the first.
	// It returns only once the leaves are durable: after a crash every
	// acknowledged leaf is present at the index that was returned.
	// Appending zero leaves is a no-op that returns the current size.
	Append(ctx context.Context, leaves [][]byte) (first uint64, err error)

	// Size returns the number of leaves appended so far.
	Size(ctx context.Context) (uint64, error)

	// Entries returns leaves [start, end). It fails with ErrRange if
	// start > end or end > Size. Entries(n, n) returns an empty slice.
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)

	// RootHash returns the RFC 6962 root of the tree of the first size leaves
	// (SHA-256 of the empty string for size 0). It fails with ErrRange if
	// size > Size.
	RootHash(ctx context.Context, size uint64) ([]byte, error)

	// InclusionProof returns the RFC 9162 inclusion proof for leaf index in
	// the tree of the given size. It fails with ErrRange unless
	// index < size <= Size.
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)

	// ConsistencyProof returns the RFC 9162 consistency proof between the
	// trees of sizes oldSize and newSize (empty if oldSize is 0 or equals
	// newSize). It fails with ErrRange unless oldSize <= newSize <= Size.
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error)

	// Close releases the backend's resources.
	Close() error
}
