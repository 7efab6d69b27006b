package verifier

import "context"

// Source is where a verifier gets what it checks: a directory reached over
// gRPC, an in-process directory in tests, or a malicious one in the attack
// suite. Nothing a Source returns is trusted; every byte is verified.
//
// Byte fields hold the canonical encodings of docs/protocol.md; hashes are
// 32 bytes each.
type Source interface {
	// Lookup returns the proof bundle for userID. If knownSize is non-zero
	// the bundle carries a consistency proof from that tree size to the
	// bundle's checkpoint.
	Lookup(ctx context.Context, userID string, knownSize uint64) (*LookupBundle, error)

	// History returns every log entry of userID's VRF index with version >=
	// fromVersion, oldest first, with inclusion proofs in Checkpoint.
	History(ctx context.Context, userID string, fromVersion uint64) (*HistoryBundle, error)

	// Checkpoint returns the latest signed checkpoint, with cosignatures.
	Checkpoint(ctx context.Context) ([]byte, error)

	// ConsistencyProof proves the tree of size oldSize is a prefix of the
	// tree of size newSize.
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error)

	// Entries returns raw log leaves [start, end). A Source may return fewer
	// than asked (at least one when start < end); callers loop.
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
}

// LookupBundle is everything a client needs to verify one lookup.
type LookupBundle struct {
	Checkpoint           []byte   // signed note, with cosignatures
	VRFProof             []byte   // RFC 9381 proof for the user id
	MapProof             []byte   // vmap inclusion or non-inclusion proof
	EpochRecord          []byte   // last leaf of the checkpoint's tree
	EpochRecordInclusion [][]byte // inclusion proof of EpochRecord
	AccountUpdate        []byte   // leaf the map value points to; nil if absent
	AccountUpdateIndex   uint64
	AccountUpdateProof   [][]byte // inclusion proof of AccountUpdate
	Consistency          [][]byte // from the requested knownSize
}

// HistoryBundle is an index's log entries with inclusion proofs.
type HistoryBundle struct {
	Checkpoint []byte
	VRFProof   []byte
	Entries    []HistoryEntry
}

// HistoryEntry is one AccountUpdate leaf and its inclusion proof in the
// bundle's checkpoint.
type HistoryEntry struct {
	LogIndex  uint64
	Leaf      []byte
	Inclusion [][]byte
}
