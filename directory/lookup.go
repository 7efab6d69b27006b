package directory

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/internal/boltread"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// Bounds on read requests.
const (
	MaxEntriesPerCall = 1000 // GetEntries returns at most this many leaves
	MaxHistoryEntries = 1000 // History returns at most this many entries; page with fromVersion
	maxConsCache      = 64   // consistency proofs cached per epoch
)

// published returns the current view.
func (s *Server) published() (*epochView, error) {
	v := s.view.Load()
	if v == nil {
		return nil, apierr.New(codes.Unavailable, apierr.Unavailable, "no epoch published yet")
	}
	return v, nil
}

// snapshot runs f with a read transaction of directory.db whose map epoch
// is the one of the view passed to f, so proofs from the map and index
// always match the served checkpoint.
func (s *Server) snapshot(ctx context.Context, f func(v *epochView, tx *bbolt.Tx) error) error {
	for {
		v, err := s.published()
		if err != nil {
			return err
		}
		db := s.db
		if db == nil {
			return apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shut down")
		}
		tx, err := db.Begin(false)
		if err != nil {
			return s.internal(err)
		}
		latest, _, err := s.m.LatestEpochTx(tx)
		if err != nil {
			tx.Rollback()
			return s.internal(err)
		}
		if latest == v.epoch {
			err = f(v, tx)
			tx.Rollback()
			return err
		}
		tx.Rollback()
		// The map already holds the next epoch, whose view is about to be
		// installed: wait for it (bounded; at once Unavailable while the
		// sequencer recovers, see awaitView).
		if err := s.awaitView(ctx, v); err != nil {
			return err
		}
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func normalizeUser(userID string) (string, error) {
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return "", apierr.New(codes.InvalidArgument, apierr.BadUserID, "%v", err)
	}
	return uid, nil
}

// Lookup returns the proof bundle for userID under the latest published
// checkpoint: for an unknown user a verifiable non-inclusion proof (never
// NotFound). The AccountUpdate is served without a log inclusion proof, and
// if knownSize is the published size the checkpoint is omitted
// (verifier.LookupBundle, docs/protocol.md §7.1).
func (s *Server) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	uid, err := normalizeUser(userID)
	if err != nil {
		return nil, err
	}
	if s.sh != nil {
		return s.lookupShared(ctx, uid, knownSize)
	}
	var out *verifier.LookupBundle
	err = s.snapshot(ctx, func(v *epochView, tx *bbolt.Tx) error {
		// An existing account's user record holds its VRF proof; only
		// unknown user ids need the VRF cache (or a proof computed now).
		users := s.users(tx)
		rec, err := readUser(users, uid) // does not alias what it read
		boltread.Release(users)
		if err != nil {
			return s.internal(err)
		}
		var pi []byte
		var index [32]byte
		if rec != nil {
			pi, index = rec.Proof, rec.Index
		} else if pi, index, err = s.vrf.get(nil, uid); err != nil {
			return s.internal(err)
		}
		l, err := s.m.ProveTx(tx, index)
		if err != nil {
			return s.internal(err)
		}
		if l.Epoch != v.epoch || l.Root != v.mapRoot {
			return s.internal(fmt.Errorf("%w: map epoch %d root %x, view epoch %d root %x", errCorrupt, l.Epoch, l.Root[:8], v.epoch, v.mapRoot[:8]))
		}
		if l.Found != (rec != nil) {
			return s.internal(fmt.Errorf("%w: index %x is in the map: %v, in the users bucket: %v", errCorrupt, index[:8], l.Found, rec != nil))
		}
		mp, err := lookupMapProof(l.Proof)
		if err != nil {
			return s.internal(err)
		}
		b := &verifier.LookupBundle{VRFProof: pi, MapProof: mp}
		if rec != nil {
			leaf, err := s.recordLeaf(ctx, rec)
			if err != nil {
				return s.internal(err)
			}
			if vmap.MapValue(rec.Version, rec.LogIndex, klog.EntryHash(leaf)) != l.Value {
				return s.internal(fmt.Errorf("%w: map value of %x differs from the user record and its leaf", errCorrupt, index[:8]))
			}
			b.AccountUpdate, b.AccountUpdateIndex = leaf, rec.LogIndex
		}
		if err := s.frameBundle(ctx, v, b, knownSize); err != nil {
			return err
		}
		out = b
		return nil
	})
	return out, err
}

// frameBundle adds to b what relates it to view v's checkpoint for a
// client whose last verified checkpoint has size knownSize (0: none): the
// checkpoint, the EpochRecord and its inclusion proof, and a consistency
// proof from knownSize; nothing if knownSize is v's size (the client holds
// them). A knownSize above v's size is OutOfRange (from consistency).
func (s *Server) frameBundle(ctx context.Context, v *epochView, b *verifier.LookupBundle, knownSize uint64) error {
	if knownSize == v.size {
		return nil
	}
	b.Checkpoint, b.EpochRecord, b.EpochRecordInclusion = v.checkpoint, v.record, v.recordProof
	if knownSize != 0 {
		var err error
		if b.Consistency, err = s.consistency(ctx, v, knownSize); err != nil {
			return err
		}
	}
	return nil
}

// consistency returns the consistency proof from oldSize to v.size, cached
// per view.
func (s *Server) consistency(ctx context.Context, v *epochView, oldSize uint64) ([][]byte, error) {
	if oldSize > v.size {
		return nil, apierr.New(codes.OutOfRange, apierr.OutOfRange, "known tree size %d is larger than the published checkpoint's %d", oldSize, v.size)
	}
	v.consMu.Lock()
	p, ok := v.cons[oldSize]
	v.consMu.Unlock()
	if ok {
		return p, nil
	}
	p, err := s.consistencyProof(ctx, oldSize, v.size)
	if err != nil {
		return nil, s.internal(err)
	}
	v.consMu.Lock()
	if len(v.cons) >= maxConsCache {
		clear(v.cons)
	}
	v.cons[oldSize] = p
	v.consMu.Unlock()
	return p, nil
}

// History returns the log entries of userID's account with version >=
// fromVersion (at most MaxHistoryEntries; ask again from the next version),
// oldest first, with inclusion proofs in the bundle's checkpoint. An
// unknown user has no entries.
func (s *Server) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	uid, err := normalizeUser(userID)
	if err != nil {
		return nil, err
	}
	pi, index, err := s.vrf.get(s.db, uid)
	if err != nil {
		return nil, s.internal(err)
	}
	fromVersion = max(fromVersion, 1)
	if s.sh != nil {
		return s.historyShared(ctx, pi, index, fromVersion)
	}
	var out *verifier.HistoryBundle
	err = s.snapshot(ctx, func(v *epochView, tx *bbolt.Tx) error {
		hb := &verifier.HistoryBundle{Checkpoint: v.checkpoint, VRFProof: pi}
		// history holds the superseded versions, the user record the latest.
		c := tx.Bucket(bucketHistory).Cursor()
		var idxs []uint64
		for k, val := c.Seek(historyKey(index, fromVersion)); k != nil && len(idxs) < MaxHistoryEntries; k, val = c.Next() {
			if len(k) != 40 || [32]byte(k[:32]) != index {
				break
			}
			if len(val) != 8 {
				return s.internal(fmt.Errorf("%w: history value", errCorrupt))
			}
			idxs = append(idxs, be64(val))
		}
		rec, err := getUser(tx, uid)
		if err != nil {
			return s.internal(err)
		}
		if rec != nil && rec.Index == index && rec.Version >= fromVersion && len(idxs) < MaxHistoryEntries {
			idxs = append(idxs, rec.LogIndex)
		}
		for _, li := range idxs {
			leaves, err := s.backend.Entries(ctx, li, li+1)
			if err != nil {
				return s.internal(err)
			}
			incl, err := s.inclusionProofTx(ctx, tx, li, v.size)
			if err != nil {
				return s.internal(err)
			}
			hb.Entries = append(hb.Entries, verifier.HistoryEntry{LogIndex: li, Leaf: leaves[0], Inclusion: incl})
		}
		out = hb
		return nil
	})
	return out, err
}

// Checkpoint returns the latest published checkpoint with cosignatures.
//
// While an epoch's witnesses are being asked to cosign, the newest signed
// checkpoint is already returned, with the log's signature only: a witness's
// auditor must be able to read and verify an epoch before the witness
// cosigns it. Lookups are always served with the published, cosigned view.
func (s *Server) Checkpoint(ctx context.Context) ([]byte, error) {
	v, err := s.published()
	if err != nil {
		return nil, err
	}
	if h := s.signed.Load(); h != nil && h.size > v.size {
		return h.note, nil
	}
	return v.checkpoint, nil
}

// readableSize is the size up to which log reads are served: the newest
// signed checkpoint's, which is at least the published view's.
func (s *Server) readableSize(v *epochView) uint64 {
	if h := s.signed.Load(); h != nil && h.size > v.size {
		return h.size
	}
	return v.size
}

// ConsistencyProof proves that the tree of size oldSize is a prefix of the
// tree of size newSize; newSize must not exceed the newest signed checkpoint.
func (s *Server) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	v, err := s.published()
	if err != nil {
		return nil, err
	}
	if size := s.readableSize(v); oldSize > newSize || newSize > size {
		return nil, apierr.New(codes.OutOfRange, apierr.OutOfRange, "consistency from %d to %d: need old <= new <= %d (the signed size)", oldSize, newSize, size)
	}
	if newSize == v.size {
		return s.consistency(ctx, v, oldSize)
	}
	p, err := s.consistencyProof(ctx, oldSize, newSize)
	if err != nil {
		return nil, s.internal(err)
	}
	return p, nil
}

// Entries returns signed log leaves [start, end): at most
// MaxEntriesPerCall, and none past the newest signed checkpoint (at least
// one when start < end). start must be below the signed size.
func (s *Server) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	v, err := s.published()
	if err != nil {
		return nil, err
	}
	size := s.readableSize(v)
	if start > end || (start < end && start >= size) {
		return nil, apierr.New(codes.OutOfRange, apierr.OutOfRange, "entries [%d, %d): need start <= end and start < %d (the signed size)", start, end, size)
	}
	end = min(end, size, start+MaxEntriesPerCall)
	leaves, err := s.backend.Entries(ctx, start, end)
	if err != nil {
		if errors.Is(err, klog.ErrRange) {
			return nil, apierr.New(codes.OutOfRange, apierr.OutOfRange, "%v", err)
		}
		return nil, s.internal(err)
	}
	return leaves, nil
}

// Source returns a verifier.Source that calls this server in process.
func (s *Server) Source() verifier.Source { return s }

var _ verifier.Source = (*Server)(nil)
