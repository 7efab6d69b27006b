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

// ErrConflict is returned (wrapped) by Append when the log does not end at
// the index the caller expected: another writer appended, or leaves of an
// earlier, interrupted Append were stored. Nothing of the refused Append
// was stored at any other index than the one expected. The caller must read
// the log again (Size, Entries) before it appends anything else.
var ErrConflict = errors.New("log: append conflict: the log does not end at the expected index")

// Backend stores the leaves of one log and answers proofs about them.
//
// Implementations must be safe for concurrent use. Append is the only
// mutating call; Keyline's sequencer is the log's single writer.
//
// Hashes (roots and proof elements) are 32-byte SHA-256 RFC 6962 hashes.
// Errors about indices or sizes outside the tree wrap ErrRange.
type Backend interface {
	// Append appends leaves, in order, at indices expected,
	// expected+1, ... It is conditional: if the log's size is not expected
	// (or, for a backend with asynchronous integration, index expected is
	// already taken by a stored leaf) it fails with an error wrapping
	// ErrConflict and appends nothing at any other index, so a restarted or
	// deposed writer can never store the same leaves twice. It returns only
	// once the leaves are durable: after a crash every acknowledged leaf is
	// present at its expected index. Appending zero leaves checks the size
	// and appends nothing.
	//
	// Any other error leaves the outcome unknown (a prefix of the leaves
	// may have been stored at their expected indices): the caller must read
	// the log again before it appends.
	Append(ctx context.Context, expected uint64, leaves [][]byte) error

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
