package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// Shared state (Config.StateBackend = StateMySQL).
//
// Every process of the directory keeps its state in one MySQL/MariaDB
// database (directory/sqlstate) and its log in one Trillian tree:
//
//   - Any process answers reads from a consistent snapshot of the database
//     (sharedSnapshot): the latest epoch row, whose served checkpoint
//     commits to exactly the map and account index read in the same
//     snapshot; the view of that checkpoint (EpochRecord, its inclusion
//     proof) is built from the log once per epoch.
//   - Any process validates Update and Reset as the single process does and
//     puts the result in the durable queue table; the caller waits until its
//     row is done (or failed) in a published epoch.
//   - Sequencers (RoleAll, RoleSequencer) compete for the lease row; the
//     holder drains the queue, cuts epochs, signs checkpoints and asks
//     witnesses, and every write it makes (epoch commit, checkpoint store)
//     checks its fencing token under the lease row's lock, so a sequencer
//     that lost the lease never publishes. A new holder first replays the
//     log beyond the state's applied size (the log is the source of truth:
//     leaves an old holder appended are kept and closed into an epoch).
type shared struct {
	st    *sqlstate.Store
	cps   *sqlstate.Checkpoints
	m     sharedMap
	lease atomic.Pointer[sqlstate.Lease] // the lease this sequencer holds; nil when not holding

	viewMu sync.Mutex // serializes installShared

	accounts *accountCache // account records served (bounded by accountCacheBytes), checked against the map on use
	noMemory atomic.Bool   // benchmarks: every lookup reads the database

	batch chan *pointReq // lookups' reads for the pointReaders (shared_batch.go)
	// statements and points read by the pointReaders (monitoring,
	// benchmarks: points per statement)
	batchStmts, batchPoints atomic.Uint64

	// tilesWarm: the tile cache held every tile of the map of epoch
	// warmEpoch (warmLoop keeps it so, as far as the cache's
	// bound allows), so a lookup expects its whole path in memory.
	tilesWarm atomic.Bool
	warmEpoch atomic.Uint64

	memLookups atomic.Uint64 // lookups served from memory (monitoring, benchmarks)
	dbLookups  atomic.Uint64 // lookups that read the database

	waitMu  sync.Mutex
	waiters map[uint64]chan sqlstate.Result

	poll time.Duration // how often frontends look for a new epoch / results
	done chan struct{} // closed when follower and waiter loops have stopped
}

// leaseToken is the fencing token of the held lease (0: none; no write
// passes the fence with it).
func (sh *shared) leaseToken() uint64 {
	if l := sh.lease.Load(); l != nil {
		return l.Token
	}
	return 0
}

func (c *Config) sharedDefaults() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrConfig}, a...)...) }
	if c.StateBackend == "" {
		c.StateBackend = StateBolt
	}
	if c.Role == "" {
		c.Role = RoleAll
	}
	switch c.Role {
	case RoleAll, RoleFrontend, RoleSequencer:
	default:
		return bad("Role %q is not %q, %q or %q", c.Role, RoleAll, RoleFrontend, RoleSequencer)
	}
	switch c.StateBackend {
	case StateBolt:
		if c.Role != RoleAll {
			return bad("Role %q needs the %q state backend (the %q state lives in one process)", c.Role, StateMySQL, StateBolt)
		}
		if c.MySQLDSN != "" {
			return bad("MySQLDSN is set but the state backend is %q", StateBolt)
		}
	case StateMySQL:
		if c.MySQLDSN == "" {
			return bad("the %q state backend needs MySQLDSN", StateMySQL)
		}
		if c.LogBackend != BackendTrillian && c.Role != RoleAll && c.sharedLog == nil {
			return bad("Role %q shares the log between processes: it needs the %q log backend", c.Role, BackendTrillian)
		}
	default:
		return bad("StateBackend %q is not %q or %q", c.StateBackend, StateBolt, StateMySQL)
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.LeaseDuration < 100*time.Millisecond {
		return bad("LeaseDuration %v is below 100ms", c.LeaseDuration)
	}
	if c.LeaseHolder == "" {
		host, _ := os.Hostname()
		var r [4]byte
		rand.Read(r[:])
		c.LeaseHolder = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(r[:]))
	}
	return nil
}

// fingerprint hashes what every process of one directory must share: the
// origin, the log's verifier key, the VRF public key, the reset public key
// and the admin token.
func (k *keys) fingerprint() []byte {
	h := sha256.New()
	h.Write([]byte("keyline shared-state keys v1\n" + k.origin + "\n" + k.vkey + "\n"))
	h.Write(k.vrf.Public().Bytes())
	h.Write(k.resetKey.Public().(ed25519.PublicKey))
	adm := sha256.Sum256(k.adminHash)
	h.Write(adm[:])
	return h.Sum(nil)
}

// openShared finishes Open for the shared state backend.
func (s *Server) openShared(ctx context.Context) (err error) {
	c := &s.cfg
	sh := &shared{waiters: map[uint64]chan sqlstate.Result{}, done: make(chan struct{}), accounts: newAccountCache(accountCacheBytes)}
	tm, err := newTileMap()
	if err != nil {
		return err
	}
	sh.m = tm
	sh.poll = min(max(c.EpochInterval/4, 5*time.Millisecond), 100*time.Millisecond)
	if sh.st, err = sqlstate.Open(ctx, c.MySQLDSN); err != nil {
		return fmt.Errorf("directory: state database: %w", err)
	}
	s.sh = sh
	if err := sh.st.ClaimKeys(ctx, s.keys.fingerprint()); err != nil {
		if errors.Is(err, sqlstate.ErrKeysDiffer) {
			return fmt.Errorf("%w: the keys in %s (origin, log, VRF, reset keys, admin token) are not those of the directory in the state database: "+
				"every process of one directory needs a copy of the first process's key files", ErrKeyFile, c.DataDir)
		}
		return fmt.Errorf("directory: state database: %w", err)
	}
	if err := sh.st.ClaimLayout(ctx, sh.m.layout()); err != nil {
		return fmt.Errorf("directory: state database: %w", err)
	}
	sh.cps = &sqlstate.Checkpoints{S: sh.st, Token: sh.leaseToken}
	s.cps = sh.cps
	switch {
	case c.sharedLog != nil:
		s.backend = c.sharedLog
	case c.LogBackend == BackendEmbedded:
		l, err := embedded.Open(filepath.Join(c.DataDir, FileLogDB), &embedded.Options{NoSync: c.NoSync, Timeout: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("directory: opening log: %w", err)
		}
		s.backend = l
	case c.LogBackend == BackendTrillian:
		b, err := dialTrillian(ctx, c)
		if err != nil {
			return fmt.Errorf("directory: trillian: %w", err)
		}
		s.backend = b
	}
	if s.witnesses, err = newWitnesses(c.Witnesses); err != nil {
		return err
	}
	if err := s.writeTrust(); err != nil {
		return fmt.Errorf("directory: writing %s: %w", FileTrust, err)
	}
	// Serve the published epoch at once if there is one.
	if err := s.follow(ctx); err != nil {
		c.Logf("directory: no published epoch to serve yet: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(2 + pointReaders)
	go func() { defer wg.Done(); s.followLoop() }()
	go func() { defer wg.Done(); s.waiterLoop() }()
	if c.Role != RoleSequencer {
		wg.Add(1)
		go func() { defer wg.Done(); s.warmLoop() }()
	}
	sh.batch = make(chan *pointReq, maxPointBatch)
	for range pointReaders {
		go func() { defer wg.Done(); s.pointReader() }()
	}
	go func() { wg.Wait(); close(sh.done) }()
	if c.Role == RoleFrontend {
		close(s.seqDone)
	} else {
		go s.sharedSequencer()
	}
	return nil
}

// closeShared closes the state database (after the loops stopped).
func (s *Server) closeShared() error {
	if s.sh == nil {
		return nil
	}
	select {
	case <-s.closing:
		<-s.sh.done
	default:
	}
	return s.sh.st.Close()
}

// follow installs the view of the latest published epoch of the database
// if it is newer than the installed one, and notes the newest signed
// checkpoint.
func (s *Server) follow(ctx context.Context) error {
	e, err := s.sh.st.Latest(ctx)
	if err != nil {
		return err
	}
	if e == nil || e.Checkpoint == nil {
		return errors.New("no published epoch in the state database")
	}
	if v := s.view.Load(); v == nil || v.epoch < e.Epoch {
		if _, err := s.sharedView(ctx, e); err != nil {
			return err
		}
	}
	if cp, err := s.sh.cps.LatestCheckpoint(ctx); err == nil && cp != nil {
		if c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin); err == nil {
			if h := s.signed.Load(); h == nil || h.size < c.Size {
				s.signed.Store(&signedHead{size: c.Size, note: cp})
			}
		}
	}
	return nil
}

func (s *Server) followLoop() {
	s.everyPoll(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.follow(ctx)
		cancel()
	})
}

// everyPoll calls f every poll interval until the server closes.
func (s *Server) everyPoll(f func()) {
	t := time.NewTicker(s.sh.poll)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		f()
	}
}

// warmLoop runs warmTiles after every poll until the server closes (on its
// own goroutine: loading the tiles of a large map must not hold back
// installing new epochs).
func (s *Server) warmLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.everyPoll(func() { s.warmTiles(ctx) })
}

// warmTiles brings the tile cache up to the latest published epoch of the
// database when a new epoch was installed: it reads, in one snapshot, the
// tiles that epoch rewrote (all of them the first time, or while the cache
// did not hold every tile), so that lookups of the installed view find
// their whole path in memory when the map's tiles fit the cache's bound
// (tileCacheBytes). Cached tiles are checked against the refs leading to
// them on every proof; this only decides what is in memory.
func (s *Server) warmTiles(ctx context.Context) {
	if v := s.view.Load(); v == nil || v.epoch == s.sh.warmEpoch.Load() {
		return
	}
	sn, err := s.sh.st.Snapshot(ctx)
	if err != nil {
		return
	}
	defer sn.Close()
	e, err := sn.Latest()
	if err != nil || e == nil || e.Checkpoint == nil {
		return
	}
	full := !s.sh.tilesWarm.Load()
	st, err := s.sh.m.warm(sn, e.MapRoot, full)
	if err != nil {
		s.sh.tilesWarm.Store(false)
		if ctx.Err() == nil {
			// Try again at the next epoch (lookups read their
			// tiles meanwhile, and report what is wrong).
			s.sh.warmEpoch.Store(e.Epoch)
			s.cfg.Logf("directory: loading the map tiles of epoch %d into memory: %v", e.Epoch, err)
		}
		return
	}
	s.sh.warmEpoch.Store(e.Epoch)
	s.sh.tilesWarm.Store(st.Complete)
}

// sharedView returns the view of epoch row e (which must have a
// checkpoint): the installed one if it is e's, else one built from the log
// and checked against e, installed if newer than the installed one.
func (s *Server) sharedView(ctx context.Context, e *sqlstate.Epoch) (*epochView, error) {
	if v := s.view.Load(); v != nil && v.epoch == e.Epoch && bytes.Equal(v.checkpoint, e.Checkpoint) {
		return v, nil
	}
	c, _, err := klog.OpenCheckpoint(e.Checkpoint, s.keys.verifier, s.keys.origin)
	if err != nil {
		return nil, fmt.Errorf("%w: stored checkpoint of epoch %d: %v", errCorrupt, e.Epoch, err)
	}
	if c.Size != e.LogSize || c.Size == 0 {
		return nil, fmt.Errorf("%w: epoch %d covers %d log leaves, its checkpoint %d", errCorrupt, e.Epoch, e.LogSize, c.Size)
	}
	leaves, err := s.backend.Entries(ctx, c.Size-1, c.Size)
	if err != nil {
		return nil, err
	}
	rec, err := klog.ParseEpochRecord(leaves[0])
	if err != nil || rec.Epoch != e.Epoch || rec.MapRoot != e.MapRoot {
		return nil, fmt.Errorf("%w: leaf %d is not the EpochRecord of epoch %d with the stored map root", errCorrupt, c.Size-1, e.Epoch)
	}
	proof, err := s.backend.InclusionProof(ctx, c.Size-1, c.Size)
	if err != nil {
		return nil, err
	}
	v := &epochView{
		epoch: rec.Epoch, size: c.Size, mapRoot: rec.MapRoot, timestamp: rec.Timestamp,
		checkpoint: e.Checkpoint, record: leaves[0], recordProof: proof,
		next: make(chan struct{}), cons: map[uint64][][]byte{},
	}
	s.installShared(v)
	return v, nil
}

// installShared installs v unless a view of a later epoch (or of the same
// epoch with the same checkpoint) is installed.
func (s *Server) installShared(v *epochView) {
	s.sh.viewMu.Lock()
	defer s.sh.viewMu.Unlock()
	if cur := s.view.Load(); cur != nil && (cur.epoch > v.epoch || cur.epoch == v.epoch && bytes.Equal(cur.checkpoint, v.checkpoint)) {
		return
	}
	s.install(v)
}

// sharedSnapshot runs f with a snapshot of the state database and the view
// of the epoch it holds. It never serves an epoch older than the installed
// view (a client that saw a checkpoint on this process never sees an older
// one), and never a map state without its published checkpoint.
func (s *Server) sharedSnapshot(ctx context.Context, f func(v *epochView, sn *sqlstate.Snapshot) error) error {
	for try := 0; ; try++ {
		sn, err := s.sh.st.Snapshot(ctx)
		if err != nil {
			return s.stateErr(err)
		}
		e, err := sn.Latest()
		if err != nil {
			sn.Close()
			return s.stateErr(err)
		}
		if e == nil || e.Checkpoint == nil {
			sn.Close()
			if e != nil && try < 50 {
				// The sequencer is publishing an epoch it replayed.
				select {
				case <-time.After(s.sh.poll):
					continue
				case <-ctx.Done():
					return ctxError(ctx.Err(), "waiting for the recovered epoch's checkpoint")
				}
			}
			return apierr.New(codes.Unavailable, apierr.Unavailable, "no epoch published yet")
		}
		if cur := s.view.Load(); cur != nil && cur.epoch > e.Epoch && try < 3 {
			sn.Close() // a snapshot older than the installed view: take a new one
			continue
		}
		v, err := s.sharedView(ctx, e)
		if err != nil {
			sn.Close()
			return s.internal(err)
		}
		err = f(v, sn)
		sn.Close()
		return err
	}
}

// sharedMap is the verifiable map's storage in the state database.
type sharedMap interface {
	// apply applies one epoch's updates in tx and returns the new root.
	apply(tx *sqlstate.Tx, ups []vmap.Update) (vmap.Hash, error)
	// prove returns index's proof in the map in r, whose root must be root.
	prove(r sqlstate.MapReader, root vmap.Hash, index vmap.Index) (*vmap.Proof, error)
	// warm loads the tiles of the map in r under root into the cache,
	// as far as its bound allows (vmap.TiledMap.Warm).
	warm(r sqlstate.MapReader, root vmap.Hash, full bool) (vmap.WarmStats, error)
	// pathDepths are the depths (multiples of 8) of the tiles on a path
	// that a lookup reads from the database: those below the cached top
	// levels, down to the deepest level proofs have needed so far.
	pathDepths() []uint8
	// layout names the storage layout (recorded in the database).
	layout() string
}

// errNotPrefetched means a proof needed a map record its one-statement read
// did not fetch (a path deeper than the tile levels read): the lookup then
// reads in a snapshot transaction.
var errNotPrefetched = errors.New("directory: map record not prefetched")

// errStaleRecords means map records or an account record do not give a
// proof under the view's root (cached records of another epoch, or a read
// of another epoch): the lookup reads again, in a snapshot transaction.
var errStaleRecords = errors.New("directory: map records of another epoch")

// prefetched is a MapReader over the records read with a Point.
type prefetched map[string][]byte

func (p prefetched) GetMany(keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, ok := p[string(k)]
		if !ok {
			return nil, errNotPrefetched
		}
		out[i] = v
	}
	return out, nil
}

// pointView returns the epoch row and view of a one-statement read, or
// retry=true if the read is older than the installed view or its epoch is
// not published yet.
func (s *Server) pointView(ctx context.Context, e *sqlstate.Epoch, try int) (v *epochView, retry bool, err error) {
	if e == nil {
		return nil, false, apierr.New(codes.Unavailable, apierr.Unavailable, "no epoch published yet")
	}
	if e.Checkpoint == nil {
		if try >= 50 {
			return nil, false, apierr.New(codes.Unavailable, apierr.Unavailable, "the sequencer is publishing a recovered epoch; retry")
		}
		select {
		case <-time.After(s.sh.poll):
			return nil, true, nil
		case <-ctx.Done():
			return nil, false, ctxError(ctx.Err(), "waiting for the recovered epoch's checkpoint")
		}
	}
	if cur := s.view.Load(); cur != nil && cur.epoch > e.Epoch && try < 3 {
		return nil, true, nil // older than the installed view: read again
	}
	v, err = s.sharedView(ctx, e)
	if err != nil {
		return nil, false, s.internal(err)
	}
	return v, false, nil
}

// lookupShared is Lookup on the shared state for a canonical user id.
//
// For the installed view (lookupShort): the path's tiles from the tile
// cache (keyed by hash and checked from the view's root down), the VRF
// proof from the VRF cache and the account record from the account cache
// (checked against the map value the proof gives), so nothing stale can be
// served; what is not in memory of the VRF proof and the account record is
// read in one batched statement of primary-key reads (the users row with
// its account record, or the account record). A client that knows a larger
// checkpoint than the installed view, or a path whose tiles are not all
// cached, goes to the database for the tiles too:
//
// one round trip (sqlstate.ReadPoint, one statement, one read view):
// the account record and the path's tiles below the cached levels, keyed by
// the VRF index, or by the user id when its VRF proof is not in memory (the
// users row gives the proof and index, and the statement computes the tile
// keys from it). For the installed view that is all: the proof must verify
// under its root and the record match the proven value. Else (no view, a
// client that knows a later checkpoint, or records of a later epoch) the
// statement also reads the latest epoch row and the proof must verify under
// that epoch's root; if it does not, or a path is deeper than the levels
// read, the lookup reads in a snapshot transaction.
func (s *Server) lookupShared(ctx context.Context, uid string, knownSize uint64) (*verifier.LookupBundle, error) {
	pi, index, known := s.vrf.cached(uid)
	if v := s.view.Load(); v != nil && knownSize <= v.size && !s.sh.noMemory.Load() {
		b, err := s.lookupShort(ctx, v, uid, knownSize, &pi, &index, &known)
		if err == nil || !errors.Is(err, errNotPrefetched) && !errors.Is(err, errStaleRecords) {
			return b, err
		}
	}
	s.sh.dbLookups.Add(1)
	q := sqlstate.PointQuery{Index: index, Depths: s.sh.m.pathDepths()}
	if !known {
		q.ByUser, q.UserID = true, uid
	}
	// Serving the installed view, the statement leaves the epoch row out:
	// the records must give a proof under the view's root (a later epoch's
	// records that do not are read again with the epoch row).
	view := s.view.Load()
	q.NoEpoch = view != nil && knownSize <= view.size
	for try := 0; ; try++ {
		p, err := s.readPoint(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctxError(ctx.Err(), "reading the lookup's records")
			}
			return nil, s.stateErr(err)
		}
		if p.Incomplete {
			q.NoEpoch = false
			continue
		}
		if q.ByUser {
			if !p.User {
				// No account of uid in this read: the non-inclusion
				// proof needs the index, so prove (an unknown user).
				if pi, index, err = s.vrf.get(nil, uid); err != nil {
					return nil, s.internal(err)
				}
				q.ByUser, q.UserID, q.Index = false, "", index
				continue
			}
			// The users row is written by the sequencer with the
			// account (the same trust as the embedded users bucket;
			// clients verify the VRF proof).
			pi, index = p.VRFProof, p.Index
			s.vrf.put(uid, vrfEntry{pi: pi, index: index})
			q.ByUser, q.UserID, q.Index = false, "", index
		}
		v := view
		if !q.NoEpoch {
			var retry bool
			if v, retry, err = s.pointView(ctx, p.Epoch, try); err != nil {
				return nil, err
			}
			if retry {
				continue
			}
		}
		recs := make(prefetched, len(q.Depths))
		for i, d := range q.Depths {
			recs[string(sqlstate.TileKey(index, d))] = p.Records[i]
		}
		b, err := s.lookupBundle(ctx, v, recs, func() (*sqlstate.Account, error) { return p.Account, nil }, pi, index, knownSize)
		if errors.Is(err, errNotPrefetched) || errors.Is(err, errStaleRecords) {
			if q.NoEpoch {
				q.NoEpoch = false // records of a later epoch: read with its row
				continue
			}
			return s.lookupSnapshot(ctx, pi, index, knownSize)
		}
		return b, err
	}
}

// lookupShort serves a lookup of the installed view v with the map's
// tiles from the tile cache and at most one batched database read of
// primary keys: the users row and its account record when the user's VRF
// proof is not in memory, else the account record when it is not in the
// account cache and the proof is an inclusion (none for an absent user or
// a cached record). It updates *pi, *index and *known with what it learns.
// errNotPrefetched (a tile not in the cache) or errStaleRecords (a record
// that does not match v's map value) mean the caller reads the database.
func (s *Server) lookupShort(ctx context.Context, v *epochView, uid string, knownSize uint64, pi *[]byte, index *[32]byte, known *bool) (*verifier.LookupBundle, error) {
	fromDB := false
	var read *sqlstate.Account // the account record read with the users row
	if !*known {
		if !s.sh.tilesWarm.Load() {
			// The path's tiles are likely not all in memory: read
			// them with the users row (the caller's statement).
			return nil, errNotPrefetched
		}
		p, err := s.readPoint(ctx, sqlstate.PointQuery{ByUser: true, UserID: uid, NoEpoch: true})
		if err != nil {
			return nil, s.readErr(ctx, err)
		}
		fromDB = true
		if p.User {
			// The users row is written by the sequencer with the
			// account (the same trust as the embedded users bucket;
			// clients verify the VRF proof).
			*pi, *index, read = p.VRFProof, p.Index, p.Account
			s.vrf.put(uid, vrfEntry{pi: *pi, index: *index})
		} else if *pi, *index, err = s.vrf.get(nil, uid); err != nil {
			// No account of uid in the latest epoch, so none in v: the
			// non-inclusion proof needs the index.
			return nil, s.internal(err)
		}
		*known = true
	}
	var readErr error
	acct := func() (*sqlstate.Account, error) {
		if read != nil {
			return read, nil
		}
		if a := s.sh.accounts.get(*index); a != nil {
			return a, nil
		}
		fromDB = true
		p, err := s.readPoint(ctx, sqlstate.PointQuery{Index: *index, NoEpoch: true})
		if err != nil {
			readErr = err
			return nil, errNotPrefetched
		}
		if p.Account == nil {
			return nil, errStaleRecords // read again with the epoch row
		}
		return p.Account, nil
	}
	b, err := s.lookupBundle(ctx, v, prefetched{}, acct, *pi, *index, knownSize)
	if readErr != nil {
		return nil, s.readErr(ctx, readErr)
	}
	if err == nil {
		if fromDB {
			s.sh.dbLookups.Add(1)
		} else {
			s.sh.memLookups.Add(1)
		}
	}
	return b, err
}

// readErr is the API error of a failed read of a lookup's records.
func (s *Server) readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx.Err(), "reading the lookup's records")
	}
	return s.stateErr(err)
}

// lookupSnapshot is lookupShared in a snapshot transaction.
func (s *Server) lookupSnapshot(ctx context.Context, pi []byte, index [32]byte, knownSize uint64) (*verifier.LookupBundle, error) {
	var out *verifier.LookupBundle
	err := s.sharedSnapshot(ctx, func(v *epochView, sn *sqlstate.Snapshot) error {
		b, err := s.lookupBundle(ctx, v, sn, func() (*sqlstate.Account, error) { return sn.Account(index) }, pi, index, knownSize)
		out = b
		return err
	})
	return out, err
}

// lookupBundle builds a lookup bundle of view v from map records read by r
// and the account record given by account, all of v's epoch.
func (s *Server) lookupBundle(ctx context.Context, v *epochView, r sqlstate.MapReader, account func() (*sqlstate.Account, error), pi []byte, index [32]byte, knownSize uint64) (*verifier.LookupBundle, error) {
	_, isSnap := r.(*sqlstate.Snapshot)
	p, err := s.sh.m.prove(r, v.mapRoot, index)
	if errors.Is(err, errNotPrefetched) {
		return nil, err
	}
	if err != nil && !isSnap {
		// The map records were read after the epoch row, possibly of a
		// later epoch: read again in one snapshot.
		return nil, errStaleRecords
	}
	if err != nil {
		return nil, s.internal(err)
	}
	// Fail closed: never serve a proof that does not verify under the
	// checkpoint's map root. (A proof that verifies is the epoch's, even
	// if some records were read after a later epoch committed.)
	if _, _, err := vmap.Verify(v.mapRoot, index, p); err != nil {
		if !isSnap {
			return nil, errStaleRecords
		}
		return nil, s.internal(fmt.Errorf("%w: map proof from the database does not verify: %v", errCorrupt, err))
	}
	mp, err := lookupMapProof(p)
	if err != nil {
		return nil, s.internal(err)
	}
	b := &verifier.LookupBundle{VRFProof: pi, MapProof: mp}
	if p.Kind == vmap.Inclusion {
		rec, err := account()
		if errors.Is(err, errNotPrefetched) || errors.Is(err, errStaleRecords) {
			return nil, err
		}
		if err != nil {
			return nil, s.internal(err)
		}
		if rec == nil {
			return nil, s.internal(fmt.Errorf("%w: map has index %x, account index does not", errCorrupt, index[:8]))
		}
		if klog.EntryHash(rec.Leaf) != rec.EntryHash || vmap.MapValue(rec.Version, rec.LogIndex, rec.EntryHash) != p.Value {
			if !isSnap {
				return nil, errStaleRecords // a cached record of another epoch
			}
			return nil, s.internal(fmt.Errorf("%w: map value of %x differs from the account index", errCorrupt, index[:8]))
		}
		s.sh.accounts.put(index, rec)
		b.AccountUpdate, b.AccountUpdateIndex = rec.Leaf, rec.LogIndex
	}
	if err := s.frameBundle(ctx, v, b, knownSize); err != nil {
		return nil, err
	}
	return b, nil
}

// historyShared is History on the shared state (the epoch row and the
// history rows in one statement).
func (s *Server) historyShared(ctx context.Context, pi []byte, index [32]byte, fromVersion uint64) (*verifier.HistoryBundle, error) {
	for try := 0; ; try++ {
		e, idxs, err := s.sh.st.ReadHistory(ctx, index, fromVersion, MaxHistoryEntries)
		if err != nil {
			return nil, s.stateErr(err)
		}
		v, retry, err := s.pointView(ctx, e, try)
		if err != nil {
			return nil, err
		}
		if retry {
			continue
		}
		hb := &verifier.HistoryBundle{Checkpoint: v.checkpoint, VRFProof: pi}
		for _, li := range idxs {
			if li >= v.size {
				return nil, s.internal(fmt.Errorf("%w: history has log index %d beyond the epoch's %d leaves", errCorrupt, li, v.size))
			}
			leaves, err := s.backend.Entries(ctx, li, li+1)
			if err != nil {
				return nil, s.internal(err)
			}
			incl, err := s.backend.InclusionProof(ctx, li, v.size)
			if err != nil {
				return nil, s.internal(err)
			}
			hb.Entries = append(hb.Entries, verifier.HistoryEntry{LogIndex: li, Leaf: leaves[0], Inclusion: incl})
		}
		return hb, nil
	}
}

// accountCache remembers account records by VRF index, in two generations
// of at most maxBytes/2 each (leaf bytes plus accountEntryOverhead per
// record): when the current one fills up it becomes the old one and the
// previous old one is dropped, so hot records stay. A record is only served
// if it matches the map value proven under the served view's root.
type accountCache struct {
	half     int64
	mu       sync.RWMutex
	cur, old map[[32]byte]*sqlstate.Account
	curBytes int64
	oldBytes int64
}

// accountCacheBytes bounds a process's account cache: 128 MiB, about
// 150,000 records of 2-device accounts (AccountUpdate leaves of about 780
// bytes). With the tile cache (tileCacheBytes) and the VRF cache
// (VRFCacheSize entries) it bounds what a frontend keeps in memory.
const accountCacheBytes = 128 << 20

// accountEntryOverhead estimates a cached record's bytes beside its leaf
// (key, fields, map entry).
const accountEntryOverhead = 160

func newAccountCache(maxBytes int64) *accountCache {
	return &accountCache{half: max(maxBytes/2, 1), cur: map[[32]byte]*sqlstate.Account{}, old: map[[32]byte]*sqlstate.Account{}}
}

func (c *accountCache) get(index [32]byte) *sqlstate.Account {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if a, ok := c.cur[index]; ok {
		return a
	}
	return c.old[index]
}

func (c *accountCache) put(index [32]byte, a *sqlstate.Account) {
	size := int64(len(a.Leaf) + accountEntryOverhead)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cur[index]; ok {
		c.curBytes -= int64(len(old.Leaf) + accountEntryOverhead)
	} else if c.curBytes+size > c.half {
		c.old, c.oldBytes = c.cur, c.curBytes
		c.cur, c.curBytes = map[[32]byte]*sqlstate.Account{}, 0
	}
	c.cur[index] = a
	c.curBytes += size
}

// bytes returns the estimated bytes held.
func (c *accountCache) bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.curBytes + c.oldBytes
}

// stateErr converts an error of the state database into an API error: a
// connection failure (the database down or restarting) is Unavailable,
// anything else Internal (logged).
func (s *Server) stateErr(err error) error {
	var me *mysql.MySQLError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		return s.internal(err)
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, sql.ErrConnDone),
		errors.As(err, &ne), strings.Contains(err.Error(), "database is closed"):
		s.cfg.Logf("directory: state database unavailable: %v", err)
		return apierr.New(codes.Unavailable, apierr.Unavailable, "the state database is unavailable; retry shortly")
	}
	return s.internal(err)
}
