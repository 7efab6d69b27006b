package auditor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/auditor/audittest"
)

// TestStateFormat: a state file of another format (format 1 kept the map
// as per-node records) is refused with ErrStateFormat and a message telling
// the user to run the audit again from scratch, and is left unchanged; a
// fresh directory then replays to the same state as ever.
func TestStateFormat(t *testing.T) {
	d := newDir(t)
	honest(t, d)
	for _, format := range []uint64{1, 3} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, auditor.StateFile)
			db, err := bbolt.Open(path, 0o600, nil)
			must(t, err)
			must(t, db.Update(func(tx *bbolt.Tx) error {
				for _, name := range []string{"meta", "nodes", "accounts", "users", "pending", "map", "epochs", "resets", "after_reset"} {
					if _, err := tx.CreateBucket([]byte(name)); err != nil {
						return err
					}
				}
				m := tx.Bucket([]byte("meta"))
				if err := m.Put([]byte("format"), binary.BigEndian.AppendUint64(nil, format)); err != nil {
					return err
				}
				return m.Put([]byte("next"), binary.BigEndian.AppendUint64(nil, 0))
			}))
			must(t, db.Close())
			before, err := os.ReadFile(path)
			must(t, err)
			_, err = auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{NoSync: true})
			if !errors.Is(err, auditor.ErrStateFormat) {
				t.Fatalf("Open of a format %d state file: %v, want ErrStateFormat", format, err)
			}
			for _, want := range []string{fmt.Sprintf("format %d", format), "from scratch", path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			after, err := os.ReadFile(path)
			must(t, err)
			if !bytes.Equal(before, after) {
				t.Error("the refused state file was modified")
			}
		})
	}
	a := open(t, d, t.TempDir(), 4)
	st, err := a.Run(ctx, nil)
	must(t, err)
	if st.Replayed != d.Log.Size() {
		t.Fatalf("fresh replay: %+v", st)
	}
}

// failingSource fails every Entries call reaching failAt.
type failingSource struct {
	*audittest.Log
	failAt uint64
}

var errInjected = errors.New("injected source failure")

func (s failingSource) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if end > s.failAt {
		return nil, errInjected
	}
	return s.Log.Entries(ctx, start, end)
}

// TestSourceFailureResumes: while the rule pass applies one batch the next
// is already being fetched; a Source failure there ends Run with that error
// (not a violation) after every batch before it is committed, and the next
// Run resumes there and reaches the state of an uninterrupted replay.
func TestSourceFailureResumes(t *testing.T) {
	d := newDir(t)
	honest(t, d)
	must(t, d.Populate(10, 2, 5))
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			dir := t.TempDir()
			const batch, failAt = 4, 13
			src := failingSource{Log: d.Log, failAt: failAt}
			a, err := auditor.Open(dir, d.Trust(), src, &auditor.Options{BatchSize: batch, NoSync: true, Workers: workers})
			must(t, err)
			_, err = a.Run(ctx, nil)
			if !errors.Is(err, errInjected) || errors.Is(err, auditor.ErrViolation) {
				t.Fatalf("Run with a failing source: %v", err)
			}
			st, err := a.Status(ctx)
			must(t, err)
			if want := uint64(failAt / batch * batch); st.Replayed != want {
				t.Fatalf("replayed %d after the failure, want the %d leaves of the batches before it", st.Replayed, want)
			}
			must(t, a.Close())
			a, err = auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{BatchSize: batch, NoSync: true, Workers: workers})
			must(t, err)
			defer a.Close()
			st, err = a.Run(ctx, nil)
			must(t, err)
			fresh, err := open(t, d, t.TempDir(), 1000).Run(ctx, nil)
			must(t, err)
			if st.Replayed != d.Log.Size() || st.Accounts != fresh.Accounts || st.Epoch != fresh.Epoch || st.Checkpoint.Hash != fresh.Checkpoint.Hash {
				t.Fatalf("resumed %+v, uninterrupted %+v", st, fresh)
			}
		})
	}
}
