package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
)

// The log node cache: with a remote log backend (Trillian) the directory
// keeps, in directory.db, the hashes of every perfect subtree of the log
// prefix its map and index cover, so that lookups, histories and
// consistency requests get their Merkle proofs locally instead of from
// several RPCs each.
//
// The cache is written in the same transaction as the map and index of
// every epoch (applyTx's caller), from the leaves the directory appended
// itself or replayed from the log. Before that transaction commits, the
// root computed from the cache at the epoch's log size must equal the root
// the backend vouches for: the root of the checkpoint just published over a
// Trillian root the backend verified (runEpoch), or the backend's RootHash
// (replay, fill). A mismatch is errCorrupt.
//
// Bucket "lognodes": u8 level || u64 index -> 32-byte node hash.
// meta "lognodes" -> u64 log size the cache covers (equal to "applied").
var (
	bucketLogNodes = []byte("lognodes")
	keyLogNodes    = []byte("lognodes")
)

var nodeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// fillChunk is how many leaves fillLogCache reads per backend call.
const fillChunk = 1000

func logNodeKey(id compact.NodeID) []byte {
	k := make([]byte, 9)
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k
}

// cachedLogSize returns the log size the node cache covers in tx.
func cachedLogSize(tx *bbolt.Tx) uint64 {
	if b := tx.Bucket(bucketMeta).Get(keyLogNodes); len(b) == 8 {
		return be64(b)
	}
	return 0
}

// logNodes returns the stored hashes of ids.
func logNodes(tx *bbolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	b := tx.Bucket(bucketLogNodes)
	if b == nil {
		return nil, fmt.Errorf("%w: no log node cache", errCorrupt)
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v := b.Get(logNodeKey(id))
		if len(v) != 32 {
			return nil, fmt.Errorf("%w: log node cache: node (level %d, index %d) is %d bytes, want 32", errCorrupt, id.Level, id.Index, len(v))
		}
		out[i] = bytes.Clone(v)
	}
	return out, nil
}

// appendLogNodesTx extends the node cache in tx, which must cover exactly
// first leaves, by the given leaves, and returns the root of the log of
// first+len(leaves) leaves.
func appendLogNodesTx(tx *bbolt.Tx, first uint64, leaves [][]byte) ([]byte, error) {
	if got := cachedLogSize(tx); got != first {
		return nil, fmt.Errorf("%w: log node cache covers %d leaves, appending at %d", errCorrupt, got, first)
	}
	b, err := tx.CreateBucketIfNotExists(bucketLogNodes)
	if err != nil {
		return nil, err
	}
	b.FillPercent = 0.9
	hashes, err := logNodes(tx, compact.RangeNodes(0, first, nil))
	if err != nil {
		return nil, err
	}
	rng, err := nodeFactory.NewRange(0, first, hashes)
	if err != nil {
		return nil, fmt.Errorf("%w: log node cache: %v", errCorrupt, err)
	}
	var putErr error
	visit := func(id compact.NodeID, hash []byte) {
		if putErr == nil {
			putErr = b.Put(logNodeKey(id), bytes.Clone(hash))
		}
	}
	for _, l := range leaves {
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(l), visit); err != nil {
			return nil, err
		}
		if putErr != nil {
			return nil, putErr
		}
	}
	end := first + uint64(len(leaves))
	if err := tx.Bucket(bucketMeta).Put(keyLogNodes, u64(end)); err != nil {
		return nil, err
	}
	if end == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

// checkLogRoot compares a root computed from the node cache with the root
// the log backend vouches for at size.
func checkLogRoot(size uint64, local, trusted []byte) error {
	if !bytes.Equal(local, trusted) {
		return fmt.Errorf("%w: log root at size %d computed from the directory's leaves is %x, the log's is %x", errCorrupt, size, local, trusted)
	}
	return nil
}

// fillLogCache brings the node cache of a directory whose cache lags its
// map and index (an older data dir, or a backend switched to the cache)
// up to the applied log size, reading the missing leaves from the log and
// checking the result against the log's root.
func (s *Server) fillLogCache(ctx context.Context) error {
	if !s.cacheLog {
		return nil
	}
	var cached, applied uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		cached = cachedLogSize(tx)
		if b := tx.Bucket(bucketMeta).Get(keyApplied); len(b) == 8 {
			applied = be64(b)
		}
		return nil
	}); err != nil {
		return err
	}
	if cached > applied {
		return fmt.Errorf("%w: log node cache covers %d leaves, the map and index %d", errCorrupt, cached, applied)
	}
	if cached == applied {
		return nil
	}
	s.cfg.Logf("directory: filling the log node cache with leaves [%d, %d)", cached, applied)
	for pos := cached; pos < applied; {
		end := min(applied, pos+fillChunk)
		leaves, err := s.backend.Entries(ctx, pos, end)
		if err != nil {
			return corruptOr(err, "reading log leaves [%d, %d)", pos, end)
		}
		if uint64(len(leaves)) != end-pos {
			return fmt.Errorf("%w: log returned %d leaves for [%d, %d)", errCorrupt, len(leaves), pos, end)
		}
		var root []byte
		if err := s.db.Update(func(tx *bbolt.Tx) error {
			var err error
			root, err = appendLogNodesTx(tx, pos, leaves)
			if err != nil || end != applied {
				return err
			}
			trusted, err := s.backend.RootHash(ctx, end)
			if err != nil {
				return corruptOr(err, "log root at size %d", end)
			}
			return checkLogRoot(end, root, trusted)
		}); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// inclusionProofTx returns the inclusion proof of leaf index in the log of
// the given size: from the node cache in tx when it covers size, else from
// the backend.
func (s *Server) inclusionProofTx(ctx context.Context, tx *bbolt.Tx, index, size uint64) ([][]byte, error) {
	if !s.cacheLog || size > cachedLogSize(tx) {
		return s.backend.InclusionProof(ctx, index, size)
	}
	if index >= size {
		return nil, fmt.Errorf("%w: inclusion proof of %d in size %d", klog.ErrRange, index, size)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return s.nodesProof(tx, n)
}

// consistencyProof returns the consistency proof between the logs of sizes
// oldSize and newSize: from the node cache when it covers newSize, else from
// the backend.
func (s *Server) consistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	if !s.cacheLog {
		return s.backend.ConsistencyProof(ctx, oldSize, newSize)
	}
	var p [][]byte
	local := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		if newSize > cachedLogSize(tx) {
			return nil
		}
		local = true
		if oldSize > newSize {
			return fmt.Errorf("%w: consistency proof from %d to %d", klog.ErrRange, oldSize, newSize)
		}
		n, err := proof.Consistency(oldSize, newSize)
		if err != nil {
			return err
		}
		p, err = s.nodesProof(tx, n)
		return err
	})
	if err != nil || local {
		return p, err
	}
	return s.backend.ConsistencyProof(ctx, oldSize, newSize)
}

func (s *Server) nodesProof(tx *bbolt.Tx, n proof.Nodes) ([][]byte, error) {
	hashes, err := logNodes(tx, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// sizedLog is the log backend seen at a fixed size: Publish signs a
// checkpoint at exactly the size the map and index cover, even if the log
// (a Trillian signer integrating leaves of an interrupted append) grows
// meanwhile.
type sizedLog struct {
	klog.Backend
	size uint64
}

func (l sizedLog) Size(ctx context.Context) (uint64, error) {
	n, err := l.Backend.Size(ctx)
	if err != nil {
		return 0, err
	}
	if n < l.size {
		return 0, fmt.Errorf("%w: log has %d leaves, the directory covers %d", klog.ErrCorrupt, n, l.size)
	}
	return l.size, nil
}

// CheckStored forwards to the backend's check of stored leaves, if it has
// one (see log.StoredChecker).
func (l sizedLog) CheckStored(ctx context.Context, from, to uint64) error {
	if sc, ok := l.Backend.(klog.StoredChecker); ok {
		return sc.CheckStored(ctx, from, to)
	}
	return nil
}

// publish signs (or returns the already signed) checkpoint at size, the log
// size the map and index cover.
func (s *Server) publish(ctx context.Context, size uint64) ([]byte, error) {
	if h := s.hooks.Load(); h != nil && h.publish != nil {
		if err := h.publish(size); err != nil {
			return nil, err
		}
	}
	return klog.Publish(ctx, sizedLog{s.backend, size}, s.cps, s.keys.signer, s.keys.verifier, s.keys.origin)
}
