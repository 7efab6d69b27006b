package auditor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
)

// Bucket layout of the auditor's state file (docs/protocol.md).
var (
	bMeta     = []byte("meta")     // see the k* keys
	bNodes    = []byte("nodes")    // u8 level || u64 index -> [32] perfect subtree hash
	bAccounts = []byte("accounts") // [32] VRF index -> account record
	bUsers    = []byte("users")    // user id -> [32] VRF index || u64 log index of its create
	bPending  = []byte("pending")  // [32] VRF index -> [32] map value, since the last epoch record
	bTiles    = []byte("tiles")    // vmap.TileID key -> tile: the recomputed map, tiled (mapStride)
	bEpochs   = []byte("epochs")   // u64 tree size ending at an epoch record -> u64 epoch
	bResets   = []byte("resets")   // u64 log index of a reset -> [32] VRF index
	// bAfterReset holds, until the next EpochRecord, the versions that
	// follow a reset: u64 log index -> u64 reset log index || u64
	// effective_at (Unix seconds) || u8 1 if a cancellation.
	bAfterReset = []byte("after_reset")

	allBuckets = [][]byte{bMeta, bNodes, bAccounts, bUsers, bPending, bTiles, bEpochs, bResets, bAfterReset}

	kFormat     = []byte("format")      // u64 stateFormat
	kNext       = []byte("next")        // u64 next log index to replay
	kRange      = []byte("range")       // compact range [0, next): concatenated hashes
	kCheckpoint = []byte("checkpoint")  // last verified signed checkpoint note
	kEpochLeaf  = []byte("epoch_leaf")  // leaf of the last EpochRecord
	kEpochIndex = []byte("epoch_index") // u64 log index of the last EpochRecord
	kResets     = []byte("resets")      // u64 number of resets replayed
	kCancelled  = []byte("cancelled")   // u64 number of resets cancelled by the owner within their window
	kAccounts   = []byte("accounts")    // u64 number of indexes created
	kViolation  = []byte("violation")   // evidence JSON of the violation found, if any
)

// stateFormat is the state file's format number (docs/protocol.md §8.4).
// Format 1 (up to November 2026) stored the map as one record per node
// (verifier/vmap/boltstore); format 2 stores it as tiles.
const stateFormat = 2

// mapStride is the tile stride of the auditor's map, in bits (the
// directory's default, directory/mapdb.DefaultStride).
const mapStride = 8

// ErrCorruptState means the auditor's own state file is inconsistent.
var ErrCorruptState = errors.New("auditor: corrupt state file")

// ErrStateFormat means the state file was written in a format this auditor
// does not read (an older one, which it does not convert, or a newer one):
// the audit must be run again from scratch in a fresh directory.
var ErrStateFormat = errors.New("auditor: state file format not supported")

func u64b(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

func getU64(b *bbolt.Bucket, k []byte) (uint64, bool, error) {
	v := b.Get(k)
	if v == nil {
		return 0, false, nil
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: %s is %d bytes", ErrCorruptState, k, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func nodeKey(id compact.NodeID) []byte {
	k := make([]byte, 9)
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k
}

// dbNodes returns a Getter over the nodes bucket of tx.
func dbNodes(tx *bbolt.Tx) mtree.Getter {
	b := tx.Bucket(bNodes)
	return func(id compact.NodeID) ([]byte, error) {
		v := b.Get(nodeKey(id))
		if len(v) != 32 {
			return nil, fmt.Errorf("%w: node %d/%d missing", ErrCorruptState, id.Level, id.Index)
		}
		return append([]byte(nil), v...), nil
	}
}

// account record: u64 version || u64 log index || u64 resets || leaf.
type accountRec struct {
	version, logIndex, resets uint64
	leaf                      []byte
}

func (r *accountRec) marshal() []byte {
	b := make([]byte, 0, 24+len(r.leaf))
	b = binary.BigEndian.AppendUint64(b, r.version)
	b = binary.BigEndian.AppendUint64(b, r.logIndex)
	b = binary.BigEndian.AppendUint64(b, r.resets)
	return append(b, r.leaf...)
}

func parseAccountRec(v []byte) (*accountRec, error) {
	if len(v) < 25 {
		return nil, fmt.Errorf("%w: account record of %d bytes", ErrCorruptState, len(v))
	}
	return &accountRec{
		version:  binary.BigEndian.Uint64(v),
		logIndex: binary.BigEndian.Uint64(v[8:]),
		resets:   binary.BigEndian.Uint64(v[16:]),
		leaf:     append([]byte(nil), v[24:]...),
	}, nil
}
