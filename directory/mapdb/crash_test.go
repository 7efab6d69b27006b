package mapdb

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vmap/boltstore"
	"go.etcd.io/bbolt"
)

// crashEpochSize is the number of updates per epoch of the crash test: half
// new accounts, half updates of existing ones, so every epoch rewrites tiles
// at every level.
const crashEpochSize = 400

// crashEpoch returns epoch e's updates (e >= 1) for the crash test.
func crashEpoch(e int) []vmap.Update {
	ups := batch((e-1)*crashEpochSize/2, e*crashEpochSize/2, e)
	for i := 0; i < crashEpochSize/2 && e > 1; i++ {
		k := (i*7919 + e*104729) % ((e - 1) * crashEpochSize / 2)
		dup := false
		for _, u := range ups {
			if u.Index == idx(k) {
				dup = true
				break
			}
		}
		if !dup {
			ups = append(ups, vmap.Update{Index: idx(k), Value: val(k, e)})
		}
	}
	return ups
}

// TestCrashHelper is the child process of TestCrashDuringEpoch: it applies
// epochs to the database in KEYLINE_MAPDB_CRASH_DB and prints each epoch
// number after its commit returned (the acknowledgement).
func TestCrashHelper(t *testing.T) {
	path := os.Getenv("KEYLINE_MAPDB_CRASH_DB")
	if path == "" {
		t.Skip("child process of TestCrashDuringEpoch")
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenOptions(db, "map", Options{Stride: 4})
	if err != nil {
		t.Fatal(err)
	}
	last, _, err := m.LatestEpoch()
	if errors.Is(err, ErrNoEpoch) {
		last = 0
	} else if err != nil {
		t.Fatal(err)
	}
	for e := int(last) + 1; ; e++ {
		if _, err := m.ApplyEpoch(uint64(e), crashEpoch(e)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ack %d\n", e)
	}
}

// TestCrashDuringEpoch kills (SIGKILL) a process applying epochs at random
// points, several times, and checks after each crash that every
// acknowledged epoch is there, that the stored tiles are all valid and
// consistent with the latest epoch's root, and that proofs verify.
func TestCrashDuringEpoch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	acked := 0
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
		cmd.Env = append(os.Environ(), "KEYLINE_MAPDB_CRASH_DB="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after this round's first acknowledgement plus a delay that
		// differs per round, so the kill lands inside later epochs'
		// commits at different points (the child is busy writing).
		sc := bufio.NewScanner(out)
		var deadline time.Time
		for sc.Scan() {
			var e int
			if _, err := fmt.Sscanf(sc.Text(), "ack %d", &e); err == nil {
				acked = max(acked, e)
				if deadline.IsZero() {
					deadline = time.Now().Add(time.Duration(30+round*70) * time.Millisecond)
				}
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := OpenOptions(db, "map", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Stride() != 4 {
			t.Fatalf("stride %d after reopen, want the stored 4", m.Stride())
		}
		latest, root, err := m.LatestEpoch()
		if err != nil {
			t.Fatal(err)
		}
		if int(latest) < acked {
			t.Fatalf("round %d: latest epoch %d, but %d was acknowledged", round, latest, acked)
		}
		// Every tile decodes, hashes correctly, and tile 0 hashes to root.
		err = db.View(func(tx *bbolt.Tx) error {
			b, err := m.buckets(tx)
			if err != nil {
				return err
			}
			n := 0
			err = b.tiles.ForEach(func(k, v []byte) error {
				id, err := vmap.ParseTileKey(k)
				if err != nil {
					return err
				}
				h, err := vmap.CheckTile(id, 4, v)
				if err == nil && id.Depth == 0 && h != root {
					err = fmt.Errorf("tile 0 hash %x, epoch %d root %x", h[:4], latest, root[:4])
				}
				n++
				return err
			})
			if err == nil {
				var r vmap.Hash
				if r, err = m.tm.Root(boltstore.NewTiles(b.tiles)); err == nil && r != root {
					err = fmt.Errorf("tiled root differs from the epoch's")
				}
			}
			t.Logf("round %d: epoch %d (acked %d), %d tiles", round, latest, acked, n)
			return err
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := 0; i < int(latest)*crashEpochSize/2; i += 37 {
			l, err := m.Prove(idx(i))
			if err != nil {
				t.Fatal(err)
			}
			if err := vmap.VerifyInclusion(root, idx(i), l.Value, l.Proof); err != nil || !l.Found {
				t.Fatalf("round %d: index %d: %v", round, i, err)
			}
		}
		db.Close()
	}
	if acked < 4 {
		t.Fatalf("only %d epochs acknowledged in 4 rounds", acked)
	}
}
