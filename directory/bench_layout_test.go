package directory

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/directory/mapdb"
	"github.com/keyline/keyline/verifier/vmap"
)

// BenchmarkDiskLayout measures directory.db's bytes per account at
// KEYLINE_DIR_BENCH_N accounts in layout 2 and after its conversion to
// layout 3, without a log and without signing: it writes the users records
// and the map the way the fixture build's epochs do (epochs of N/16, at most
// 625,000 accounts, or KEYLINE_DIR_BENCH_EPOCH: the layout-3 figures do not
// depend on it; each one transaction with mapdb.ApplyEpochTx and the
// users records put in key order at FillPercent 0.9; random VRF indexes,
// 80-byte proofs and map values; user ids "bench-<i>", version 1), reports
// the pages of each bucket and the file size, converts the file
// (compactDirDB, as Open does) and reports them again with the conversion
// time. Only the account count matters, not the accounts' contents: the
// records and map tiles have the fixture's sizes: at 100k the layout-2
// figures are the fixture's to 1 B (users 180.2, tiles 172.4; the
// fixture's users records went in in random order), and the layout-3 ones
// depend on neither order nor epochs. The files are deleted at the end.
//
//	KEYLINE_DIR_BENCH_N=10000000 go test -run='^$' -bench='^BenchmarkDiskLayout$' -benchtime=1x -timeout 2h ./directory
func BenchmarkDiskLayout(b *testing.B) {
	n := benchN()
	path := filepath.Join(b.TempDir(), FileDirDB)
	db, err := openBolt(path, true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { db.Close() }()
	if err := createBuckets(db); err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyLayout, u64(2)) }); err != nil {
		b.Fatal(err)
	}
	m, err := mapdb.Open(db, bucketMap)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.ApplyEpoch(0, nil); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	batch := min(max(n/16, 1000), 625000)
	if v, err := strconv.Atoi(os.Getenv("KEYLINE_DIR_BENCH_EPOCH")); err == nil && v > 0 {
		batch = v
	}
	start := time.Now()
	logIndex := uint64(1) // after the genesis EpochRecord
	for epoch, first := uint64(1), 0; first < n; epoch, first = epoch+1, first+batch {
		cnt := min(batch, n-first)
		ups := make([]vmap.Update, cnt)
		recs := make([][]byte, cnt)
		for j := range cnt {
			r := userRecord{Proof: make([]byte, vrfProofSize), Version: 1, LogIndex: logIndex + uint64(j)}
			fillRand(rng, r.Proof)
			fillRand(rng, r.Index[:])
			ups[j].Index = r.Index
			fillRand(rng, ups[j].Value[:])
			recs[j] = r.marshalV2()
		}
		logIndex += uint64(cnt) + 1
		if err := db.Update(func(tx *bbolt.Tx) error {
			if _, err := m.ApplyEpochTx(tx, epoch, ups); err != nil {
				return err
			}
			users := tx.Bucket(bucketUsers)
			users.FillPercent = 0.9
			// In key order: puts in random order would cost quadratic
			// time in a bucket's first, large transaction (bbolt splits
			// nodes only at commit).
			keys := make([][]byte, cnt)
			for j := range cnt {
				keys[j] = fmt.Appendf(nil, "%s-%d", benchPrefix, first+j)
			}
			order := make([]int, cnt)
			for j := range order {
				order[j] = j
			}
			slices.SortFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
			for _, j := range order {
				if err := users.Put(keys[j], recs[j]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "layout-2 directory.db: %d accounts, %v\n", first+cnt, time.Since(start).Round(time.Second))
	}
	for b.Loop() {
	}
	reportDisk(b, "v2", db, n)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if _, err := compactDirDB(db, path+suffixConverting, fi.Size(), true); err != nil {
		b.Fatal(err)
	}
	conv := time.Since(start)
	db.Close()
	if err := os.Rename(path+suffixConverting, path); err != nil {
		b.Fatal(err)
	}
	if db, err = openBolt(path, true); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(conv.Seconds(), "conversion-s")
	b.Logf("conversion to layout 3: %v", conv)
	reportDisk(b, "v3", db, n)
}

// fillRand fills p with rng's bytes.
func fillRand(rng *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// reportDisk reports the pages bbolt allocates to each top-level bucket of
// db (Bucket.Stats: branch and leaf pages, overflow pages included, nested
// buckets included) and db's file size, per account of n.
func reportDisk(b *testing.B, prefix string, db *bbolt.DB, n int) {
	var total int
	if err := db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
			st := bk.Stats()
			alloc := st.BranchAlloc + st.LeafAlloc
			total += alloc
			b.ReportMetric(float64(alloc)/float64(n), prefix+"-"+string(name)+"-B/account")
			if alloc > 0 {
				b.Logf("%s %s: %d keys, %d B allocated (%.1f B/account), %.0f%% in use", prefix, name, st.KeyN, alloc,
					float64(alloc)/float64(n), 100*float64(st.BranchInuse+st.LeafInuse)/float64(alloc))
			}
			return nil
		})
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/float64(n), prefix+"-allocated-B/account")
	if fi, err := os.Stat(db.Path()); err == nil {
		b.ReportMetric(float64(fi.Size())/float64(n), prefix+"-file-B/account")
	}
}

// BenchmarkLayoutRead compares the directory.db part of a lookup in a
// layout-2 and a layout-3 file of the same accounts (for example a copy of
// a fixture's directory.db and the converted one; both are opened
// read-write, as mapdb.Open needs, but only read): per iteration, for one
// random bulk account "bench-<i>", it reads and decodes the users record
// and computes the map proof of its index (mapdb.ProveTx, tile cache
// included) in one read transaction of each file, alternating which file
// goes first, and reports the mean time of each, so that both see the same
// machine load.
//
//	KEYLINE_DIR_BENCH_V2=/tmp/a/directory.db KEYLINE_DIR_BENCH_V3=/tmp/b/directory.db KEYLINE_DIR_BENCH_N=1000000 \
//	  go test -run='^$' -bench='^BenchmarkLayoutRead$' -benchtime=200000x ./directory
func BenchmarkLayoutRead(b *testing.B) {
	p2, p3 := os.Getenv("KEYLINE_DIR_BENCH_V2"), os.Getenv("KEYLINE_DIR_BENCH_V3")
	if p2 == "" || p3 == "" {
		b.Skip("needs KEYLINE_DIR_BENCH_V2 and KEYLINE_DIR_BENCH_V3")
	}
	type file struct {
		db    *bbolt.DB
		m     *mapdb.Map
		parse func([]byte) (*userRecord, error)
		total time.Duration
	}
	open := func(path string, parse func([]byte) (*userRecord, error)) *file {
		db, err := openBolt(path, true)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		m, err := mapdb.Open(db, bucketMap)
		if err != nil {
			b.Fatal(err)
		}
		return &file{db: db, m: m, parse: parse}
	}
	files := []*file{open(p2, parseUserRecordV2), open(p3, parseUserRecord)}
	n := benchN()
	rng := rand.New(rand.NewPCG(1, 2))
	read := func(f *file, uid []byte) {
		start := time.Now()
		if err := f.db.View(func(tx *bbolt.Tx) error {
			v := tx.Bucket(bucketUsers).Get(uid)
			if v == nil {
				return fmt.Errorf("no user %s", uid)
			}
			r, err := f.parse(v)
			if err != nil {
				return err
			}
			l, err := f.m.ProveTx(tx, r.Index)
			if err == nil && !l.Found {
				err = fmt.Errorf("index of %s not in the map", uid)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
		f.total += time.Since(start)
	}
	i := 0
	for b.Loop() {
		uid := fmt.Appendf(nil, "%s-%d", benchPrefix, rng.IntN(n))
		read(files[i%2], uid)
		read(files[1-i%2], uid)
		i++
	}
	v2, v3 := files[0].total.Seconds()/float64(i), files[1].total.Seconds()/float64(i)
	b.ReportMetric(v2*1e6, "v2-µs/read")
	b.ReportMetric(v3*1e6, "v3-µs/read")
	b.ReportMetric(v3/v2, "v3/v2")
}
