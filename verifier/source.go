package verifier

import "context"

// Source is where a verifier gets what it checks: a directory reached over
// gRPC, an in-process directory in tests, or a malicious one in the attack
// suite. Nothing a Source returns is trusted; every byte is verified.
//
// Byte fields hold the canonical encodings of docs/protocol.md; hashes are
// 32 bytes each.
type Source interface {
	// Lookup returns the proof bundle for userID. knownSize is the size of
	// the client's last verified checkpoint (0: none). If it is non-zero and
	// smaller than the served checkpoint's, the bundle carries a consistency
	// proof from it; if it equals the served size, the bundle omits the
	// checkpoint, the EpochRecord and its inclusion proof (the client holds
	// them; docs/protocol.md §7.1.5).
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

// LookupBundle is everything a client needs to verify one lookup, apart
// from what it already holds.
//
// A full bundle carries Checkpoint, EpochRecord and EpochRecordInclusion. A
// held-checkpoint bundle, served when the client's known size equals the
// served checkpoint's size, leaves Checkpoint, EpochRecord,
// EpochRecordInclusion and Consistency all empty: the client verifies it
// against the checkpoint and EpochRecord of its state (VerifyLookup).
//
// The AccountUpdate carries no log inclusion proof: the map value binds its
// version, log index and entry hash, and auditors check that every map root
// is the one the log implies (docs/protocol.md §7.1, auditor rule map-root).
type LookupBundle struct {
	Checkpoint           []byte   // signed note, with cosignatures; empty if held
	VRFProof             []byte   // RFC 9381 proof for the user id
	MapProof             []byte   // vmap inclusion or non-inclusion proof
	EpochRecord          []byte   // last leaf of the checkpoint's tree; empty if held
	EpochRecordInclusion [][]byte // inclusion proof of EpochRecord; empty if held
	AccountUpdate        []byte   // leaf the map value points to; nil if absent
	AccountUpdateIndex   uint64   // its log index
	Consistency          [][]byte // from the requested knownSize
}

// Held reports whether the bundle omits the checkpoint (Checkpoint is
// empty): the client is to use the checkpoint and EpochRecord it holds.
func (b *LookupBundle) Held() bool { return len(b.Checkpoint) == 0 }

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
