package directory

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	klog "github.com/keyline/keyline/log"
)

// TestBoltCheckpoints checks the compare-and-swap of the checkpoint store
// used with the Trillian backend.
func TestBoltCheckpoints(t *testing.T) {
	ctx := context.Background()
	db, err := openBolt(filepath.Join(t.TempDir(), FileCheckpoint), true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cs := &boltCheckpoints{db: db}
	if cp, err := cs.LatestCheckpoint(ctx); err != nil || cp != nil {
		t.Fatalf("empty store: %q %v", cp, err)
	}
	if err := cs.StoreCheckpoint(ctx, []byte("x"), []byte("a")); !errors.Is(err, klog.ErrCheckpointConflict) {
		t.Fatalf("CAS from a wrong previous on an empty store: %v", err)
	}
	if err := cs.StoreCheckpoint(ctx, nil, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := cs.StoreCheckpoint(ctx, nil, []byte("b")); !errors.Is(err, klog.ErrCheckpointConflict) {
		t.Fatalf("CAS from none on a non-empty store: %v", err)
	}
	if err := cs.StoreCheckpoint(ctx, []byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if cp, _ := cs.LatestCheckpoint(ctx); string(cp) != "b" {
		t.Fatalf("latest %q", cp)
	}
}

func TestUserRecord(t *testing.T) {
	index := [32]byte{1}
	pi := make([]byte, vrfProofSize)
	leaf, err := (&klog.AccountUpdate{Index: index, Version: 7, PrevHash: [32]byte{2}, Update: klog.UpdateUpdate, Payload: []byte{2}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r := userRecord{Proof: pi, Index: index, Version: 7, LogIndex: 9, Leaf: leaf}
	got, err := parseUserRecord(r.marshal())
	if err != nil || got.Version != 7 || got.LogIndex != 9 || got.Index != index || string(got.Leaf) != string(leaf) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if len(r.marshal()) != userRecordMin+len(leaf) {
		t.Fatalf("record of %d bytes", len(r.marshal()))
	}
	// Version 300 and log index 10,000,000 take 2 and 4 bytes, so the
	// record has 114 + 4 bytes before the leaf, and nothing else
	// encodes them.
	big := userRecord{Proof: pi, Index: index, Version: 300, LogIndex: 10_000_000}
	enc := big.marshal()
	if len(enc) != vrfProofSize+32+2+4 {
		t.Fatalf("record of version 300, log index 10M is %d bytes", len(enc))
	}
	if got, err := parseUserRecord(enc); err != nil || got.Version != 300 || got.LogIndex != 10_000_000 || got.Leaf != nil {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// A non-minimal varint (1 as 0x81 0x00) and a truncated one are
	// refused.
	nonMinimal := append(append(bytes.Clone(pi), index[:]...), 0x81, 0x00, 0x09)
	if _, err := parseUserRecord(nonMinimal); !errors.Is(err, errCorrupt) {
		t.Fatalf("record with a non-minimal version varint: %v", err)
	}
	truncated := append(append(bytes.Clone(pi), index[:]...), 0x01, 0x80)
	if _, err := parseUserRecord(truncated); !errors.Is(err, errCorrupt) {
		t.Fatalf("record with a truncated log index varint: %v", err)
	}
	r.Version = 8 // the leaf is version 7
	if _, err := parseUserRecord(r.marshal()); !errors.Is(err, errCorrupt) {
		t.Fatalf("record with another version's leaf: %v", err)
	}
	b := r.marshal()
	b[len(b)-1] ^= 1
	if _, err := parseUserRecord(b[:10]); !errors.Is(err, errCorrupt) {
		t.Fatalf("short record: %v", err)
	}
}

func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	s.Close()
	if err := chmod(filepath.Join(dir, FileResetKey), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(Config{DataDir: dir, NoSync: true}); !errors.Is(err, ErrKeyFile) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opened with a world-readable reset key: %v", err)
	}
}

func chmod(path string, mode uint32) error { return os.Chmod(path, os.FileMode(mode)) }
