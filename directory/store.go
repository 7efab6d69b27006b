package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/internal/boltread"
	klog "github.com/keyline/keyline/log"
)

// Buckets of directory.db (besides the map's top-level bucket "map"), layout
// 3 (docs/protocol.md §6.4).
var (
	bucketMap     = "map"
	bucketUsers   = []byte("users")   // user id -> userRecord
	bucketHistory = []byte("history") // [32] VRF index || u64 version -> u64 log index (superseded versions)
	bucketMeta    = []byte("meta")    // "applied" -> u64 log size the map and index cover; "layout" -> u64 layout
	keyApplied    = []byte("applied")
	keyLayout     = []byte("layout")
)

// layoutVersion is the directory.db layout this directory writes (meta
// "layout"). Layout 1 (no "layout" key) kept a copy of each account's latest
// log leaf in an "accounts" bucket keyed by VRF index; layout 2 had
// fixed-width user records (u64 version and log index) in a file with the
// free pages of every past epoch. Open converts both (checkLayout).
const layoutVersion = 3

// errCorrupt is wrapped by every inconsistency between the log and the
// directory's databases.
var errCorrupt = errors.New("directory: stored state inconsistent")

// userRecord is the users-bucket value of an account that exists (layout
// 3):
//
//	[80] VRF proof || [32] VRF index || uvarint version || uvarint log index || leaf
//
// version and log index are those of the account's latest AccountUpdate,
// whose leaf is read from the log; the uvarints are minimal (LEB128, as
// encoding/binary writes them). leaf is that AccountUpdate leaf, kept only
// with a remote log backend (Trillian), so that lookups make no log round
// trip; it is empty with the embedded log.
type userRecord struct {
	Proof    []byte // VRF proof, 80 bytes
	Index    [32]byte
	Version  uint64
	LogIndex uint64
	Leaf     []byte // the latest AccountUpdate leaf, or nil
}

// userRecordMin is the size of the shortest user record (one-byte
// varints, no leaf).
const userRecordMin = vrfProofSize + 32 + 2

// userRecordV2Size is the size of a layout-2 user record without a leaf:
// [80] VRF proof || [32] VRF index || u64 version || u64 log index.
const userRecordV2Size = vrfProofSize + 32 + 16

// vrfProofSize is the size of an ECVRF-EDWARDS25519-SHA512-TAI proof.
const vrfProofSize = 80

func (r *userRecord) marshal() []byte {
	b := make([]byte, 0, userRecordMin+16+len(r.Leaf))
	b = append(b, r.Proof...)
	b = append(b, r.Index[:]...)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendUvarint(b, r.LogIndex)
	return append(b, r.Leaf...)
}

// marshalV2 is the layout-2 encoding of r (written only by the conversion
// of layout 1, whose result the conversion to layout 3 then re-encodes).
func (r *userRecord) marshalV2() []byte {
	b := make([]byte, 0, userRecordV2Size+len(r.Leaf))
	b = append(b, r.Proof...)
	b = append(b, r.Index[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, r.LogIndex)
	return append(b, r.Leaf...)
}

// minimalUvarint decodes the uvarint at the start of b and returns it and
// its length; it fails on truncation, overflow and a non-minimal encoding
// (one that ends in a 0x00 byte after a continuation byte), so that every
// value has one encoding.
func minimalUvarint(b []byte) (uint64, int, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 || (n > 1 && b[n-1] == 0) {
		return 0, 0, false
	}
	return v, n, true
}

// parseUserRecord decodes a layout-3 users-bucket value; the result does
// not alias b. A leaf, if present, must be an AccountUpdate of the
// record's index and version.
func parseUserRecord(b []byte) (*userRecord, error) {
	if len(b) < userRecordMin {
		return nil, fmt.Errorf("%w: user record of %d bytes, want at least %d", errCorrupt, len(b), userRecordMin)
	}
	r := &userRecord{Proof: bytes.Clone(b[:vrfProofSize])}
	copy(r.Index[:], b[vrfProofSize:])
	rest := b[vrfProofSize+32:]
	var n int
	var ok bool
	if r.Version, n, ok = minimalUvarint(rest); !ok {
		return nil, fmt.Errorf("%w: user record of %x: bad version varint", errCorrupt, r.Index[:8])
	}
	rest = rest[n:]
	if r.LogIndex, n, ok = minimalUvarint(rest); !ok {
		return nil, fmt.Errorf("%w: user record of %x: bad log index varint", errCorrupt, r.Index[:8])
	}
	if rest = rest[n:]; len(rest) > 0 {
		r.Leaf = bytes.Clone(rest)
		if err := r.checkLeaf(r.Leaf); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// parseUserRecordV2 decodes a layout-2 users-bucket value (the leaf is
// kept as it is, unchecked; the result does not alias b).
func parseUserRecordV2(b []byte) (*userRecord, error) {
	if len(b) < userRecordV2Size {
		return nil, fmt.Errorf("%w: layout-2 user record of %d bytes, want at least %d", errCorrupt, len(b), userRecordV2Size)
	}
	r := &userRecord{
		Proof:    bytes.Clone(b[:vrfProofSize]),
		Version:  binary.BigEndian.Uint64(b[vrfProofSize+32:]),
		LogIndex: binary.BigEndian.Uint64(b[vrfProofSize+40:]),
	}
	copy(r.Index[:], b[vrfProofSize:])
	if len(b) > userRecordV2Size {
		r.Leaf = bytes.Clone(b[userRecordV2Size:])
	}
	return r, nil
}

// checkLeaf checks that leaf is the AccountUpdate the record points to (its
// index and version).
func (r *userRecord) checkLeaf(leaf []byte) error {
	u, err := klog.ParseAccountUpdate(leaf)
	if err != nil {
		return fmt.Errorf("%w: leaf %d of user record: %v", errCorrupt, r.LogIndex, err)
	}
	if u.Index != r.Index || u.Version != r.Version {
		return fmt.Errorf("%w: leaf %d is version %d of index %x, the user record says version %d of %x", errCorrupt, r.LogIndex, u.Version, u.Index[:8], r.Version, r.Index[:8])
	}
	return nil
}

// accountRecord is the latest entry of one VRF index, as a state backend
// returns it.
type accountRecord struct {
	Version   uint64
	LogIndex  uint64
	EntryHash [32]byte
	Leaf      []byte
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func historyKey(index [32]byte, version uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), index[:]...), version)
}

// createBuckets creates the buckets of a new directory.db (recording the
// layout) or those an existing one lacks. It writes nothing if all exist,
// so that a directory.db Open converts is unchanged until the conversion
// replaces it.
func createBuckets(db *bbolt.DB) error {
	all := true
	if err := db.View(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketHistory, bucketUsers, bucketMeta} {
			all = all && tx.Bucket(b) != nil
		}
		return nil
	}); err != nil || all {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		fresh := tx.Bucket(bucketMeta) == nil
		for _, b := range [][]byte{bucketHistory, bucketUsers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if fresh {
			return tx.Bucket(bucketMeta).Put(keyLayout, u64(layoutVersion))
		}
		return nil
	})
}

func openBolt(path string, noSync bool) (*bbolt.DB, error) {
	return bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		NoSync:         noSync,
	})
}

// boltCheckpoints is a log.CheckpointStore in its own bbolt file, used with
// backends (Trillian) that do not store checkpoints themselves.
type boltCheckpoints struct{ db *bbolt.DB }

var (
	bucketCheckpoints = []byte("checkpoints")
	keyLatest         = []byte("latest")
)

func (c *boltCheckpoints) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketCheckpoints); b != nil {
			out = bytes.Clone(b.Get(keyLatest))
		}
		return nil
	})
	return out, err
}

func (c *boltCheckpoints) StoreCheckpoint(ctx context.Context, prev, next []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		if cur := b.Get(keyLatest); !bytes.Equal(cur, prev) || (cur == nil) != (prev == nil) {
			return fmt.Errorf("%w: stored checkpoint differs from the expected previous one", klog.ErrCheckpointConflict)
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(u64(n), next); err != nil {
			return err
		}
		return b.Put(keyLatest, next)
	})
}

// committed returns the latest committed entry of userID's account, or
// nil. Its leaf is read from the log (or the user record, with a remote
// log).
func (s *Server) committed(ctx context.Context, userID string) (*entry, error) {
	var rec *userRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		rec, err = getUser(tx, userID)
		return err
	})
	if err != nil || rec == nil {
		return nil, err
	}
	leaf, err := s.recordLeaf(ctx, rec)
	if err != nil {
		return nil, err
	}
	e, err := entryFromRecord(rec.Index, &accountRecord{Version: rec.Version, LogIndex: rec.LogIndex, EntryHash: klog.EntryHash(leaf), Leaf: leaf})
	if err != nil {
		return nil, err
	}
	e.userID, e.pi = userID, rec.Proof
	return e, nil
}

// getUser returns the user record of userID in tx, or nil.
func getUser(tx *bbolt.Tx, userID string) (*userRecord, error) {
	return readUser(boltread.Mapped(tx.Bucket(bucketUsers)), userID)
}

// readUser reads userID's record from the users bucket through src
// (bbolt's map or pread; see Server.users).
func readUser(src boltread.Source, userID string) (*userRecord, error) {
	b, err := src.Get([]byte(userID))
	if err != nil {
		return nil, fmt.Errorf("%w: users bucket: %w", errCorrupt, err)
	}
	if b == nil {
		return nil, nil
	}
	return parseUserRecord(b)
}

// users returns the users bucket of tx as lookups read it: with pread if
// it is on (Config.Pread), else through bbolt's map.
func (s *Server) users(tx *bbolt.Tx) boltread.Source {
	return s.pread.Load().Bucket(tx, tx.Bucket(bucketUsers))
}

// recordLeaf returns the AccountUpdate leaf rec points to: its own copy
// (remote log) or leaf rec.LogIndex of the log, checked against rec.
func (s *Server) recordLeaf(ctx context.Context, rec *userRecord) ([]byte, error) {
	if rec.Leaf != nil {
		return rec.Leaf, nil
	}
	leaves, err := s.backend.Entries(ctx, rec.LogIndex, rec.LogIndex+1)
	if err != nil {
		return nil, corruptOr(err, "reading leaf %d", rec.LogIndex)
	}
	if len(leaves) != 1 {
		return nil, fmt.Errorf("%w: log returned %d leaves for index %d", errCorrupt, len(leaves), rec.LogIndex)
	}
	if err := rec.checkLeaf(leaves[0]); err != nil {
		return nil, err
	}
	return leaves[0], nil
}

func entryFromRecord(index [32]byte, rec *accountRecord) (*entry, error) {
	u, err := klog.ParseAccountUpdate(rec.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	st, ra, err := stateOf(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return &entry{index: index, version: rec.Version, prevHash: u.PrevHash, entryHash: rec.EntryHash, leaf: rec.Leaf, state: st, reset: ra, logIndex: rec.LogIndex}, nil
}
