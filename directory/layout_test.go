package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
)

// writeLayout1 rewrites the directory.db of the closed directory in dir
// into layout 1, as Keyline wrote it before layout 2: "accounts" (VRF index
// -> u64 version || u64 log index || [32] entry hash || latest leaf),
// "history" with every version, "users" (user id -> [80] VRF proof || [32]
// VRF index) and no meta "layout". The users records of the ids in
// replayed are left out, as layout 1's replay did for creates it replayed.
func writeLayout1(t *testing.T, dir string, replayed ...string) {
	t.Helper()
	ctx := context.Background()
	l, err := embedded.Open(filepath.Join(dir, FileLogDB), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	db, err := openBolt(filepath.Join(dir, FileDirDB), true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		acc, err := tx.CreateBucket(bucketAccountsV1)
		if err != nil {
			return err
		}
		users, hist := tx.Bucket(bucketUsers), tx.Bucket(bucketHistory)
		var uids, recs [][]byte
		if err := users.ForEach(func(k, v []byte) error {
			uids, recs = append(uids, bytes.Clone(k)), append(recs, bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		for i, uid := range uids {
			r, err := parseUserRecord(recs[i])
			if err != nil {
				return err
			}
			leaves, err := l.Entries(ctx, r.LogIndex, r.LogIndex+1)
			if err != nil {
				return err
			}
			h := klog.EntryHash(leaves[0])
			v := binary.BigEndian.AppendUint64(nil, r.Version)
			v = binary.BigEndian.AppendUint64(v, r.LogIndex)
			v = append(append(v, h[:]...), leaves[0]...)
			if err := acc.Put(r.Index[:], v); err != nil {
				return err
			}
			if err := hist.Put(historyKey(r.Index, r.Version), u64(r.LogIndex)); err != nil {
				return err
			}
			if err := users.Put(uid, append(bytes.Clone(r.Proof), r.Index[:]...)); err != nil {
				return err
			}
		}
		for _, uid := range replayed {
			if err := users.Delete([]byte(uid)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyLayout)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLayout1Conversion opens a directory.db of layout 1 (a copy of every
// account's latest leaf in "accounts"; one account whose create was
// replayed has no users record) and checks that Open converts it to layout
// 2: no "accounts" bucket, user records without leaves, history without the
// latest versions (also after a conversion interrupted after its first
// chunk); that every account is served and verifies at its
// version, histories are complete, and updates and creates continue.
func TestLayout1Conversion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	ann, bob, cat := newTestAccount(t, "ann"), newTestAccount(t, "bob"), newTestAccount(t, "cat")
	for _, a := range []*testAccount{ann, bob, cat} {
		if _, err := s.Update(ctx, a.bytes(t)); err != nil {
			t.Fatal(err)
		}
	}
	bob2 := bob.addDevice(t, "tablet")
	if _, err := s.Update(ctx, mustMarshal(t, bob2)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	writeLayout1(t, dir, "cat")
	defer func(n int) { convertChunk = n }(convertChunk)
	convertChunk = 2 // two conversion transactions

	// An interrupted conversion: only the first chunk is converted.
	cfg := Config{DataDir: dir, NoSync: true}
	c, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	k, err := loadKeys(&c)
	if err != nil {
		t.Fatal(err)
	}
	part := &Server{cfg: c, keys: k, vrf: newVRFCache(k.vrf, 2)}
	if part.db, err = openBolt(filepath.Join(dir, FileDirDB), true); err != nil {
		t.Fatal(err)
	}
	if done, n, err := part.convertLayout1Chunk(); done || n != 2 || err != nil {
		t.Fatalf("first chunk: done=%v n=%d %v", done, n, err)
	}
	part.db.Close()

	s = openTest(t, dir, func(c *Config) { c.VRFCacheSize = 2 })
	trust := trustOf(t, s)
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketAccountsV1) != nil {
			t.Error("layout-1 accounts bucket still there")
		}
		if b := tx.Bucket(bucketMeta).Get(keyLayout); len(b) != 8 || binary.BigEndian.Uint64(b) != layoutVersion {
			t.Errorf("meta/layout = %x", b)
		}
		n := 0
		if err := tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			n++
			if len(v) != userRecordMin {
				t.Errorf("user record of %q is %d bytes, want %d (layout 3, small version and log index, no leaf with the embedded log)", k, len(v), userRecordMin)
			}
			return nil
		}); err != nil {
			return err
		}
		if n != 3 {
			t.Errorf("%d user records, want 3", n)
		}
		if got := tx.Bucket(bucketHistory).Stats().KeyN; got != 1 {
			t.Errorf("history has %d records, want 1 (bob's version 1)", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for uid, want := range map[string]uint64{"ann": 1, "bob": 2, "cat": 1} {
		if v := mustLookup(t, s.Source(), trust, uid); !v.found || v.version != want {
			t.Fatalf("%s: found %v version %d, want %d", uid, v.found, v.version, want)
		}
	}
	h, err := s.History(ctx, "bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, 2)
	if _, err := s.Update(ctx, mustMarshal(t, ann.addDevice(t, "laptop"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, newTestAccount(t, "dan").bytes(t)); err != nil {
		t.Fatal(err)
	}
	if v := mustLookup(t, s.Source(), trust, "ann"); v.version != 2 {
		t.Fatalf("ann at version %d after the update", v.version)
	}
	h, err = s.History(ctx, "ann", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != 1 {
		t.Fatalf("ann's history from version 2 has %d entries", len(h.Entries))
	}
	s.Close()

	// A layout this directory does not know is refused.
	db, err := openBolt(filepath.Join(dir, FileDirDB), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyLayout, u64(layoutVersion+1)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(Config{DataDir: dir, NoSync: true}); err == nil || !errors.Is(err, ErrDataDirLayout) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opened a directory.db of layout %d: %v", layoutVersion+1, err)
	}
}
