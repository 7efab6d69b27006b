// The conversion of layout 2 to layout 3: a compacted copy of directory.db
// (docs/protocol.md §6.4).

package directory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/internal/atomicfile"
)

// suffixConverting names the file the conversion to layout 3 writes next
// to directory.db before renaming it over directory.db.
const suffixConverting = ".layout3"

// compactTxBytes bounds the keys and values one transaction of the
// conversion writes (the new file is written in transactions of this size,
// so the conversion's memory does not grow with the number of accounts).
var compactTxBytes = 64 << 20

// compactHook, if set (tests), is called after each committed transaction
// of the conversion's new file.
var compactHook func()

// convertLayout2 converts the layout-2 directory.db s.db to layout 3: it
// writes every bucket, in key order and with full pages, into a new file
// directory.db.layout3 (removing one left by an interrupted conversion),
// with each users record re-encoded and meta/layout 3; syncs it; closes
// s.db; renames the new file over directory.db, syncs the data dir and
// opens it as s.db. The old file is not modified: a conversion interrupted
// before the rename starts again at the next Open, and one interrupted
// after it finds layout 3. The new file has no free pages: its size is the
// pages its records take.
func (s *Server) convertLayout2() error {
	path := s.db.Path()
	tmp := path + suffixConverting
	start := time.Now()
	before, err := os.Stat(path)
	if err != nil {
		return err
	}
	s.cfg.Logf("directory: converting %s from layout 2 to layout %d (a compacted copy in %s)", FileDirDB, layoutVersion, filepath.Base(tmp))
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory: removing the interrupted conversion %s: %w", tmp, err)
	}
	users, err := compactDirDB(s.db, tmp, before.Size(), true)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("directory: converting %s to layout %d: %w", FileDirDB, layoutVersion, err)
	}
	err = s.db.Close()
	s.db = nil
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("directory: converting %s to layout %d: %w", FileDirDB, layoutVersion, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	if s.db, err = openBolt(path, s.cfg.NoSync); err != nil {
		return fmt.Errorf("directory: opening %s: %w", FileDirDB, err)
	}
	after, err := os.Stat(path)
	if err != nil {
		return err
	}
	s.cfg.Logf("directory: converted %d accounts to layout %d in %v; %s: %d -> %d bytes", users, layoutVersion,
		time.Since(start).Round(time.Millisecond), FileDirDB, before.Size(), after.Size())
	return nil
}

// compactDirDB writes every bucket of the database src into a new bbolt
// file at dst, in key order with bbolt.Bucket.FillPercent 1 (pages filled
// completely), in transactions of compactTxBytes, then syncs and closes
// it; with fromV2 (src has layout 2) the users records are re-encoded in
// layout 3 and meta/layout is 3, otherwise every record is copied as it
// is. It reads src in one read transaction. sizeHint (src's file size)
// sizes the initial mapping. It returns the number of users records.
func compactDirDB(src *bbolt.DB, dst string, sizeHint int64, fromV2 bool) (users int, err error) {
	out, err := bbolt.Open(dst, 0o600, &bbolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		NoSync:         true, // one Sync at the end
		// The file grows by the pages written, not in bbolt's 16 MiB
		// steps: after the conversion its size is the pages in use.
		NoGrowSync:      true,
		InitialMmapSize: int(min(sizeHint, 1<<40)),
	})
	if err != nil {
		return 0, err
	}
	c := &compactor{db: out, fromV2: fromV2}
	defer func() {
		if c.tx != nil {
			c.tx.Rollback()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if c.tx, err = out.Begin(true); err != nil {
		return 0, err
	}
	err = src.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if err := c.createBucket(nil, name, b.Sequence()); err != nil {
				return err
			}
			return c.copyBucket([][]byte{name}, b, &users)
		})
	})
	if err != nil {
		return 0, err
	}
	err = c.tx.Commit()
	c.tx = nil
	if err != nil {
		return 0, err
	}
	return users, out.Sync()
}

// compactor writes the copy of compactDirDB, committing its transaction
// whenever it holds compactTxBytes.
type compactor struct {
	db      *bbolt.DB
	fromV2  bool // re-encode layout 2 as layout 3
	tx      *bbolt.Tx
	written int
	cur     *bbolt.Bucket // the bucket at curPath in tx, or nil
	curPath [][]byte
}

// bucket returns the bucket at path in the current transaction, set to
// fill its pages completely.
func (c *compactor) bucket(path [][]byte) (*bbolt.Bucket, error) {
	if c.cur != nil && samePath(c.curPath, path) {
		return c.cur, nil
	}
	b := c.tx.Bucket(path[0])
	for _, name := range path[1:] {
		if b == nil {
			break
		}
		b = b.Bucket(name)
	}
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing in the new file", bytes.Join(path, []byte("/")))
	}
	b.FillPercent = 1
	c.cur, c.curPath = b, path
	return b, nil
}

func samePath(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// account counts n bytes written and commits the transaction once it
// holds compactTxBytes.
func (c *compactor) account(n int) error {
	c.written += n
	if c.written < compactTxBytes {
		return nil
	}
	err := c.tx.Commit()
	c.tx, c.cur, c.written = nil, nil, 0
	if err != nil {
		return err
	}
	if compactHook != nil {
		compactHook()
	}
	c.tx, err = c.db.Begin(true)
	return err
}

// createBucket creates the bucket name (with sequence seq) in the bucket
// at path (the root if path is empty).
func (c *compactor) createBucket(path [][]byte, name []byte, seq uint64) error {
	var nb *bbolt.Bucket
	var err error
	if len(path) == 0 {
		nb, err = c.tx.CreateBucket(name)
	} else {
		var b *bbolt.Bucket
		if b, err = c.bucket(path); err != nil {
			return err
		}
		nb, err = b.CreateBucket(name)
	}
	if err != nil {
		return err
	}
	if err := nb.SetSequence(seq); err != nil {
		return err
	}
	return c.account(len(name))
}

// copyBucket copies the records and nested buckets of b, at path, into the
// same path of the new file, re-encoding the records that changed in
// layout 3 and counting the users records in users.
func (c *compactor) copyBucket(path [][]byte, b *bbolt.Bucket, users *int) error {
	top := len(path) == 1
	isUsers, isMeta := top && bytes.Equal(path[0], bucketUsers), top && bytes.Equal(path[0], bucketMeta)
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				if err := c.createBucket(path, k, sub.Sequence()); err != nil {
					return err
				}
				if err := c.copyBucket(append(path[:len(path):len(path)], k), sub, users); err != nil {
					return err
				}
				continue
			}
		}
		switch {
		case isUsers && c.fromV2:
			r, err := parseUserRecordV2(v)
			if err != nil {
				return fmt.Errorf("users record of %q: %w", k, err)
			}
			v = r.marshal()
			*users++
		case isUsers:
			*users++
		case isMeta && c.fromV2 && bytes.Equal(k, keyLayout):
			v = u64(layoutVersion)
		}
		// The keys and values of src stay valid: its read transaction
		// outlives every transaction of the copy.
		b, err := c.bucket(path)
		if err != nil {
			return err
		}
		if err := b.Put(k, v); err != nil {
			return err
		}
		if err := c.account(len(k) + len(v)); err != nil {
			return err
		}
	}
	return nil
}
