// The directory.db layout version and the conversions of layouts 1 and 2
// (docs/protocol.md §6.4).

package directory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
)

// bucketAccountsV1 is layout 1's account index: [32] VRF index -> u64
// version || u64 log index || [32] entry hash || AccountUpdate leaf.
var bucketAccountsV1 = []byte("accounts")

// ErrDataDirLayout is wrapped by the error Open returns for a directory.db
// of a layout this directory cannot read (written by a newer Keyline).
var ErrDataDirLayout = errors.New("directory: unknown directory.db layout")

// convertChunk is how many layout-1 accounts one conversion transaction
// converts.
var convertChunk = 20000

// checkLayout converts a directory.db of layout 1 or 2 to layout 3 and
// refuses a layout it does not know.
//
// Layout 1 is first converted to layout 2 in transactions of convertChunk
// accounts, each of which moves its accounts from the layout-1 "accounts"
// bucket into their user records and drops the latest version from
// history; the last one deletes the emptied bucket and records layout 2.
// An interrupted conversion resumes with the accounts left. An account
// without a layout-1 users record (a create replayed from the log) gets its
// VRF proof computed, and its index checked. Layout 2 is then rewritten
// into a new, compacted file (convertLayout2).
func (s *Server) checkLayout() error {
	var layout uint64
	var old bool
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyLayout); b != nil {
			if len(b) != 8 {
				return fmt.Errorf("%w: meta/layout is %d bytes", errCorrupt, len(b))
			}
			layout = binary.BigEndian.Uint64(b)
		}
		old = tx.Bucket(bucketAccountsV1) != nil
		return nil
	}); err != nil {
		return err
	}
	switch {
	case layout == layoutVersion && !old:
		return nil
	case layout == 2 && !old:
		return s.convertLayout2()
	case layout == 0 && old:
	case layout == 0:
		// A layout-1 database that never committed an account.
	default:
		return fmt.Errorf("%w: %s has layout %d (with a layout-1 accounts bucket: %v); this directory reads layouts 1 to %d", ErrDataDirLayout, FileDirDB, layout, old, layoutVersion)
	}
	s.cfg.Logf("directory: converting %s from layout 1 to layout 2", FileDirDB)
	total := 0
	for {
		done, n, err := s.convertLayout1Chunk()
		if err != nil {
			return fmt.Errorf("directory: converting %s to layout 2: %w", FileDirDB, err)
		}
		total += n
		if done {
			s.cfg.Logf("directory: converted %d accounts to layout 2", total)
			return s.convertLayout2()
		}
	}
}

// convertLayout1Chunk converts up to convertChunk layout-1 accounts in one
// transaction and, once none is left, deletes the layout-1 bucket and
// records layout 2 (done).
func (s *Server) convertLayout1Chunk() (done bool, n int, err error) {
	err = s.db.Update(func(tx *bbolt.Tx) error {
		acc := tx.Bucket(bucketAccountsV1)
		if acc != nil {
			var keys, vals [][]byte
			c := acc.Cursor()
			for k, v := c.First(); k != nil && len(keys) < convertChunk; k, v = c.Next() {
				keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
			}
			for i, k := range keys {
				if err := s.convertAccount(tx, k, vals[i]); err != nil {
					return err
				}
				if err := acc.Delete(k); err != nil {
					return err
				}
			}
			n = len(keys)
			if n == convertChunk {
				return nil
			}
			if err := tx.DeleteBucket(bucketAccountsV1); err != nil {
				return err
			}
		}
		done = true
		return tx.Bucket(bucketMeta).Put(keyLayout, u64(2))
	})
	return done && err == nil, n, err
}

// convertAccount writes the layout-2 user record of the layout-1 account
// record raw of VRF index k and removes its latest version from history.
func (s *Server) convertAccount(tx *bbolt.Tx, k, raw []byte) error {
	if len(k) != 32 || len(raw) < 48 {
		return fmt.Errorf("%w: layout-1 account record of %d bytes at a %d-byte key", errCorrupt, len(raw), len(k))
	}
	index := [32]byte(k)
	rec := userRecord{Index: index, Version: binary.BigEndian.Uint64(raw), LogIndex: binary.BigEndian.Uint64(raw[8:])}
	leaf := raw[48:]
	if klog.EntryHash(leaf) != [32]byte(raw[16:48]) {
		return fmt.Errorf("%w: layout-1 account record %x: entry hash mismatch", errCorrupt, k[:8])
	}
	if err := rec.checkLeaf(leaf); err != nil {
		return err
	}
	u, _ := klog.ParseAccountUpdate(leaf)
	st, _, err := stateOf(u)
	if err != nil {
		return fmt.Errorf("%w: layout-1 account record %x: %w", errCorrupt, k[:8], err)
	}
	users := tx.Bucket(bucketUsers)
	uid := []byte(st.UserID)
	switch old := users.Get(uid); {
	case len(old) == vrfProofSize+32:
		if [32]byte(old[vrfProofSize:]) != index {
			return fmt.Errorf("%w: layout-1 users record of %q has index %x, its account %x", errCorrupt, st.UserID, old[vrfProofSize:vrfProofSize+8], k[:8])
		}
		rec.Proof = bytes.Clone(old[:vrfProofSize])
	case old == nil:
		pi, idx, err := s.vrf.get(nil, st.UserID)
		if err != nil {
			return err
		}
		if idx != index {
			return fmt.Errorf("%w: account %x holds user %q, whose VRF index is %x", errCorrupt, k[:8], st.UserID, idx[:8])
		}
		rec.Proof = pi
	default:
		return fmt.Errorf("%w: layout-1 users record of %q is %d bytes", errCorrupt, st.UserID, len(old))
	}
	if s.cacheLog {
		rec.Leaf = bytes.Clone(leaf)
	}
	if err := users.Put(uid, rec.marshalV2()); err != nil {
		return err
	}
	return tx.Bucket(bucketHistory).Delete(historyKey(index, rec.Version))
}
