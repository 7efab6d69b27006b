package directory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/mapdb"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// Server is a Keyline directory. Open it, serve it with Serve (gRPC) or use
// it in process through Source, Update and Reset, and Close it.
type Server struct {
	cfg     Config
	keys    *keys
	backend klog.Backend
	cps     klog.CheckpointStore
	cpsDB   *bbolt.DB
	db      *bbolt.DB
	m       *mapdb.Map
	vrf     *vrfCache

	view atomic.Pointer[epochView]
	// signed is the newest checkpoint the log has signed. It is ahead of
	// view while the epoch's witnesses are asked to cosign: the epoch's
	// leaves are durable and its checkpoint signed, so auditors (a
	// witness's among them) may already read and verify them.
	signed atomic.Pointer[signedHead]

	// mu guards pending, the queue sends and failed.
	mu      sync.Mutex
	pending map[[32]byte]*entry // latest validated, not yet committed entry per index
	queue   chan *entry
	kick    chan struct{}
	failed  error

	// Sequencer state, owned by the sequencer goroutine (and Open).
	size      uint64 // log size covered by the map and index
	epoch     uint64 // latest epoch; valid when haveEpoch
	haveEpoch bool
	lastTS    uint64
	lastCut   time.Time

	witnesses []*witness
	limiter   *limiter
	// degraded is the error Update fails with while recovery after a
	// failed epoch is retried (faults.go); nil when healthy.
	degraded atomic.Pointer[error]
	// queuedBytes is the size of the leaves in queue (guarded by mu;
	// bounded by Limits.QueueBytes).
	queuedBytes int64
	// sequencing is set when the sequencer starts: from then on an epoch
	// waits for the witness quorum (cosignQuorum); during Open it does not.
	sequencing atomic.Bool
	quorumView atomic.Pointer[epochView] // last view seen to have the witness quorum
	hooks      atomic.Pointer[testHooks] // fault injection (tests)

	// cacheLog is set when the log is remote (Trillian): Merkle proofs are
	// then served from the log node cache in directory.db (logcache.go).
	cacheLog bool
	// recovering is set while the sequencer resynchronizes with the log
	// after a failure (resync.go): updates and reads needing a new view
	// fail at once with Unavailable.
	recovering atomic.Bool
	// startRecovering is set by Open when the log backend was unreachable:
	// the sequencer starts with resync.
	startRecovering bool
	// appended is the last EpochRecord leaf runEpoch appended, so that
	// installing its view needs no log read (sequencer only).
	appended appendedRecord

	sh *shared // the shared (MySQL) state; nil with the bolt state (shared.go)

	closeOnce  sync.Once
	storesOnce sync.Once
	closeErr   error
	closing    chan struct{}
	seqDone    chan struct{}
	grpcMu     sync.Mutex
	grpcs      []interface{ Stop() }
}

// entry is one AccountUpdate on its way through the sequencer.
type entry struct {
	index     [32]byte
	userID    string
	pi        []byte // VRF proof to remember for userID (may be nil)
	version   uint64
	prevHash  [32]byte
	entryHash [32]byte
	leaf      []byte
	state     *devices.AccountState       // the account's state after this entry
	reset     *devices.ResetAuthorization // for a reset entry: its authorization (state is its NewState)
	done      chan result                 // nil for replayed entries

	logIndex uint64 // set by the sequencer
}

type result struct {
	epoch      uint64
	logIndex   uint64
	checkpoint []byte
	err        error
}

// UpdateResult is the acknowledgement of an accepted update.
type UpdateResult struct {
	Epoch      uint64 // epoch that contains the update
	LogIndex   uint64 // index of its AccountUpdate leaf
	Leaf       []byte // the AccountUpdate leaf
	Checkpoint []byte // signed checkpoint (with cosignatures) of that epoch
}

// signedHead is a checkpoint signed by the log, without cosignatures.
type signedHead struct {
	size uint64
	note []byte
}

// epochView is an immutable published epoch: what lookups are served from.
type epochView struct {
	epoch       uint64
	size        uint64
	mapRoot     [32]byte
	timestamp   uint64
	checkpoint  []byte // signed by the log, plus witness cosignatures
	record      []byte // EpochRecord leaf, index size-1
	recordProof [][]byte
	next        chan struct{} // closed when a newer view is published

	consMu sync.Mutex
	cons   map[uint64][][]byte // consistency proofs from old sizes
}

// Open opens (creating on first start) the directory in cfg.DataDir,
// brings the map and account index up to date with the log, publishes a
// checkpoint and starts the sequencer.
func Open(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("directory: data dir: %w", err)
	}
	k, err := loadKeys(&c)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     c,
		keys:    k,
		pending: make(map[[32]byte]*entry),
		queue:   make(chan *entry, c.QueueSize),
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		seqDone: make(chan struct{}),
	}
	s.vrf = newVRFCache(k.vrf, c.VRFCacheSize)
	s.limiter = newLimiter(c.Limits, c.MaxRecvMsgSize)
	ok := false
	defer func() {
		if !ok {
			s.closeStores()
		}
	}()
	ctx := context.Background()
	if c.StateBackend == StateMySQL {
		if err := s.openShared(ctx); err != nil {
			return nil, err
		}
		ok = true
		return s, nil
	}
	switch {
	case c.remoteLog != nil:
		s.backend, s.cacheLog = c.remoteLog, true
		s.cpsDB, err = openBolt(filepath.Join(c.DataDir, FileCheckpoint), c.NoSync)
		if err != nil {
			return nil, fmt.Errorf("directory: checkpoint store: %w", err)
		}
		s.cps = &boltCheckpoints{db: s.cpsDB}
	case c.LogBackend == BackendEmbedded:
		l, err := embedded.Open(filepath.Join(c.DataDir, FileLogDB), &embedded.Options{NoSync: c.NoSync, Timeout: 5 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("directory: opening log: %w", err)
		}
		s.backend, s.cps = l, l
	case c.LogBackend == BackendTrillian:
		b, err := dialTrillian(ctx, &c)
		if err != nil {
			return nil, fmt.Errorf("directory: trillian: %w", err)
		}
		s.backend, s.cacheLog = b, true
		s.cpsDB, err = openBolt(filepath.Join(c.DataDir, FileCheckpoint), c.NoSync)
		if err != nil {
			return nil, fmt.Errorf("directory: checkpoint store: %w", err)
		}
		s.cps = &boltCheckpoints{db: s.cpsDB}
	}
	s.db, err = openBolt(filepath.Join(c.DataDir, FileDirDB), c.NoSync)
	if err != nil {
		return nil, fmt.Errorf("directory: opening %s: %w", FileDirDB, err)
	}
	if err := createBuckets(s.db); err != nil {
		return nil, err
	}
	if s.m, err = mapdb.Open(s.db, bucketMap); err != nil {
		return nil, err
	}
	if s.witnesses, err = newWitnesses(c.Witnesses); err != nil {
		return nil, err
	}
	if err := s.writeTrust(); err != nil {
		return nil, fmt.Errorf("directory: writing %s: %w", FileTrust, err)
	}
	if err := s.recover(ctx); err != nil {
		if permanent(err) {
			return nil, err
		}
		// The log backend is down or restarting: serve (reads fail with
		// Unavailable until a view is installed) and let the sequencer
		// retry.
		c.Logf("directory: log backend not ready, the sequencer retries in the background: %v", err)
		s.startRecovering = true
		s.recovering.Store(true)
	}
	ok = true
	go s.sequencer()
	return s, nil
}

// Trust returns the client trust configuration (the contents of
// DataDir/trust.json).
func (s *Server) Trust() *verifier.TrustFile { return s.trustFile() }

// Origin returns the log origin.
func (s *Server) Origin() string { return s.keys.origin }

// AdminToken returns the token that authorizes Reset.
func (s *Server) AdminToken() string { return string(s.keys.adminHash) }

// Close stops the gRPC servers started by Serve and the sequencer (queued
// updates fail with Unavailable) and closes the databases.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.grpcMu.Lock()
		for _, g := range s.grpcs {
			g.Stop()
		}
		s.grpcMu.Unlock()
		close(s.closing)
		<-s.seqDone
	})
	return s.closeStores()
}

func (s *Server) closeStores() error {
	s.storesOnce.Do(func() {
		var errs []error
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		if s.backend != nil {
			errs = append(errs, s.backend.Close())
		}
		if s.cpsDB != nil {
			errs = append(errs, s.cpsDB.Close())
		}
		errs = append(errs, s.closeShared())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// recover brings the map and index up to the log (replaying the log suffix
// they miss), closes a trailing unfinished epoch, publishes a checkpoint at
// the log's size and installs the published view.
func (s *Server) recover(ctx context.Context) error {
	if err := s.fillLogCache(ctx); err != nil {
		return err
	}
	if err := s.replay(ctx); err != nil {
		return err
	}
	if !s.haveEpoch {
		// First start: the genesis epoch 0 holds the empty map.
		if _, err := s.runEpoch(ctx, nil, false); err != nil {
			return fmt.Errorf("directory: genesis epoch: %w", err)
		}
		return nil
	}
	cp, err := s.publish(ctx, s.size)
	if err != nil {
		return fmt.Errorf("directory: publishing: %w", err)
	}
	s.signed.Store(&signedHead{size: s.size, note: cp})
	v, err := s.buildView(ctx, cp, s.cosign(ctx, cp))
	if err != nil {
		return err
	}
	s.install(v)
	return nil
}

// replay applies the log leaves the map and index miss.
func (s *Server) replay(ctx context.Context) error {
	var applied uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyApplied); len(b) == 8 {
			applied = be64(b)
		}
		return nil
	}); err != nil {
		return err
	}
	s.size = applied
	e, _, err := s.m.LatestEpoch()
	switch {
	case err == nil:
		s.epoch, s.haveEpoch = e, true
	case errors.Is(err, mapdb.ErrNoEpoch):
		s.haveEpoch = false
	default:
		return err
	}
	if s.haveEpoch != (applied > 0) {
		return fmt.Errorf("%w: map has epoch=%v but index covers %d leaves", errCorrupt, s.haveEpoch, applied)
	}
	if applied > 0 {
		leaves, err := s.backend.Entries(ctx, applied-1, applied)
		if err != nil {
			return corruptOr(err, "reading leaf %d", applied-1)
		}
		rec, err := klog.ParseEpochRecord(leaves[0])
		if err != nil || rec.Epoch != s.epoch {
			return fmt.Errorf("%w: leaf %d is not the EpochRecord of epoch %d", errCorrupt, applied-1, s.epoch)
		}
		s.lastTS = rec.Timestamp
	}
	size, err := s.backend.Size(ctx)
	if err != nil {
		return err
	}
	if size < applied {
		return fmt.Errorf("%w: log has %d leaves but the map and index cover %d", errCorrupt, size, applied)
	}
	if size > applied {
		s.cfg.Logf("directory: replaying log leaves [%d, %d) into the map and index", applied, size)
	}
	var batch []*entry
	latest := map[[32]byte]*entry{}
	for pos := applied; pos < size; {
		end := min(size, pos+1000)
		leaves, err := s.backend.Entries(ctx, pos, end)
		if err != nil {
			return err
		}
		if len(leaves) == 0 {
			return fmt.Errorf("%w: no leaves at %d", errCorrupt, pos)
		}
		for _, leaf := range leaves {
			l, err := klog.ParseLeaf(leaf)
			if err != nil {
				return fmt.Errorf("%w: leaf %d: %v", errCorrupt, pos, err)
			}
			switch l := l.(type) {
			case *klog.AccountUpdate:
				prev := latest[l.Index]
				if prev == nil {
					if prev, err = s.committed(l.Index); err != nil {
						return err
					}
				}
				e := &entry{index: l.Index, version: l.Version, prevHash: l.PrevHash, entryHash: klog.EntryHash(leaf), leaf: leaf}
				if err := checkChain(prev, e); err != nil {
					return fmt.Errorf("%w: leaf %d: %v", errCorrupt, pos, err)
				}
				if e.state, e.reset, err = stateOf(l); err != nil {
					return fmt.Errorf("%w: leaf %d: %w", errCorrupt, pos, err)
				}
				latest[l.Index] = e
				batch = append(batch, e)
			case *klog.EpochRecord:
				if s.haveEpoch && l.Epoch != s.epoch+1 || !s.haveEpoch && l.Epoch != 0 {
					return fmt.Errorf("%w: leaf %d is EpochRecord %d after epoch %d", errCorrupt, pos, l.Epoch, s.epoch)
				}
				if err := s.applyReplayed(ctx, batch, l, leaf, pos); err != nil {
					return err
				}
				batch, latest = nil, map[[32]byte]*entry{}
			}
			pos++
		}
	}
	if len(batch) > 0 {
		// The log ends inside an epoch (an append was interrupted after
		// its first leaves): those leaves are permanent, so close the
		// epoch over them.
		s.cfg.Logf("directory: closing an unfinished epoch of %d log leaves", len(batch))
		if !s.haveEpoch {
			return fmt.Errorf("%w: account updates before the genesis epoch", errCorrupt)
		}
		if _, err := s.runEpoch(ctx, batch, true); err != nil {
			return fmt.Errorf("directory: closing unfinished epoch: %w", err)
		}
	}
	return nil
}

func checkChain(prev, e *entry) error {
	if prev == nil {
		if e.version != 1 {
			return fmt.Errorf("index %x: version %d of an unknown account", e.index[:8], e.version)
		}
		return nil
	}
	if e.version != prev.version+1 || e.prevHash != prev.entryHash {
		return fmt.Errorf("index %x: version %d does not follow version %d", e.index[:8], e.version, prev.version)
	}
	return nil
}

// stateOf returns the AccountState an AccountUpdate leaf sets, and for a
// reset entry its authorization. A payload of an older format (a data dir
// written by a Keyline before format 2) is refused with an error naming
// the version.
func stateOf(u *klog.AccountUpdate) (*devices.AccountState, *devices.ResetAuthorization, error) {
	if len(u.Payload) > 0 && u.Payload[0] < payloadFormat {
		return nil, nil, fmt.Errorf("%w: account version %d is stored in format %d, written by an older Keyline (identity key signing states); this directory reads format %d only: start a new data dir", ErrOldDataDir, u.Version, u.Payload[0], payloadFormat)
	}
	if u.Update == klog.UpdateReset {
		a, err := devices.ParseResetAuthorization(u.Payload)
		if err != nil {
			return nil, nil, err
		}
		return a.NewState, a, nil
	}
	st, err := devices.ParseAccountState(u.Payload)
	return st, nil, err
}

// payloadFormat is the format byte of the AccountState and
// ResetAuthorization encodings this directory reads.
const payloadFormat = 0x02

// ErrOldDataDir is wrapped by the error Open returns for a data dir
// written in an older format.
var ErrOldDataDir = errors.New("directory: data dir of an older format")

// applyReplayed commits a replayed epoch and checks its map root against
// the EpochRecord.
func (s *Server) applyReplayed(ctx context.Context, batch []*entry, rec *klog.EpochRecord, recLeaf []byte, pos uint64) error {
	first := pos - uint64(len(batch))
	for i, e := range batch {
		e.logIndex = first + uint64(i)
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	root, err := s.applyTx(tx, rec.Epoch, batch, pos+1)
	if err != nil {
		return err
	}
	if root != rec.MapRoot {
		return fmt.Errorf("%w: epoch %d: map root %x recomputed from the log differs from the EpochRecord's %x", errCorrupt, rec.Epoch, root[:8], rec.MapRoot[:8])
	}
	if s.cacheLog {
		local, err := appendLogNodesTx(tx, first, append(leavesOf(batch), recLeaf))
		if err != nil {
			return err
		}
		trusted, err := s.backend.RootHash(ctx, pos+1)
		if err != nil {
			return corruptOr(err, "log root at size %d", pos+1)
		}
		if err := checkLogRoot(pos+1, local, trusted); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.epoch, s.haveEpoch, s.size, s.lastTS = rec.Epoch, true, pos+1, rec.Timestamp
	return nil
}

// applyTx writes an epoch's map updates and index records in tx and returns
// the new map root. newSize is the log size after the epoch.
func (s *Server) applyTx(tx *bbolt.Tx, epoch uint64, batch []*entry, newSize uint64) (vmap.Hash, error) {
	last := map[[32]byte]*entry{}
	for _, e := range batch {
		last[e.index] = e
	}
	updates := make([]vmap.Update, 0, len(last))
	for idx, e := range last {
		updates = append(updates, vmap.Update{Index: idx, Value: vmap.MapValue(e.version, e.logIndex, e.entryHash)})
	}
	root, err := s.m.ApplyEpochTx(tx, epoch, updates)
	if err != nil {
		return root, err
	}
	acc, hist, users := tx.Bucket(bucketAccounts), tx.Bucket(bucketHistory), tx.Bucket(bucketUsers)
	for _, e := range batch {
		if err := hist.Put(historyKey(e.index, e.version), u64(e.logIndex)); err != nil {
			return root, err
		}
		if e.pi != nil && e.version == 1 {
			if err := users.Put([]byte(e.userID), append(append([]byte(nil), e.pi...), e.index[:]...)); err != nil {
				return root, err
			}
		}
	}
	for idx, e := range last {
		r := accountRecord{Version: e.version, LogIndex: e.logIndex, EntryHash: e.entryHash, Leaf: e.leaf}
		if err := acc.Put(idx[:], r.marshal()); err != nil {
			return root, err
		}
	}
	return root, tx.Bucket(bucketMeta).Put(keyApplied, u64(newSize))
}

// committed returns the latest committed entry of index, or nil.
func (s *Server) committed(index [32]byte) (*entry, error) {
	var rec *accountRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAccounts).Get(index[:])
		if b == nil {
			return nil
		}
		var err error
		rec, err = parseAccountRecord(b)
		return err
	})
	if err != nil || rec == nil {
		return nil, err
	}
	return entryFromRecord(index, rec)
}

func entryFromRecord(index [32]byte, rec *accountRecord) (*entry, error) {
	u, err := klog.ParseAccountUpdate(rec.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	st, ra, err := stateOf(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return &entry{index: index, version: rec.Version, prevHash: u.PrevHash, entryHash: rec.EntryHash, leaf: rec.Leaf, state: st, reset: ra, logIndex: rec.LogIndex}, nil
}

// errCrash is returned by a test hook to simulate a crash: the sequencer
// stops at once without cleaning up.
var errCrash = errors.New("directory: simulated crash")

// runEpoch sequences one epoch: appends batch's leaves (unless
// preAppended: they are already the log's last leaves) and the
// EpochRecord, publishes the checkpoint, gathers cosignatures, commits the
// map and index, and installs the new view.
func (s *Server) runEpoch(ctx context.Context, batch []*entry, preAppended bool) (*epochView, error) {
	first := s.size
	epoch := uint64(0)
	if s.haveEpoch {
		epoch = s.epoch + 1
	}
	for i, e := range batch {
		e.logIndex = first + uint64(i)
	}
	newSize := first + uint64(len(batch)) + 1
	ts := uint64(time.Now().Unix())
	if ts < s.lastTS {
		ts = s.lastTS
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	root, err := s.applyTx(tx, epoch, batch, newSize)
	if err != nil {
		return nil, err
	}
	rec, _ := (&klog.EpochRecord{Epoch: epoch, MapRoot: root, Timestamp: ts}).Marshal()
	leaves := make([][]byte, 0, len(batch)+1)
	if !preAppended {
		for _, e := range batch {
			leaves = append(leaves, e.leaf)
		}
	}
	leaves = append(leaves, rec)
	want := first
	if preAppended {
		want = first + uint64(len(batch))
	}
	var localRoot []byte
	if s.cacheLog {
		if localRoot, err = appendLogNodesTx(tx, first, append(leavesOf(batch), rec)); err != nil {
			return nil, err
		}
	}
	// The append is conditional on want: if the log does not end there
	// (leaves of an interrupted append, another writer) nothing is written
	// and resync rereads the log.
	if err := s.backend.Append(ctx, want, leaves); err != nil {
		return nil, fmt.Errorf("appending epoch %d at log index %d: %w", epoch, want, err)
	}
	s.appended = appendedRecord{size: newSize, leaf: rec}
	if h := s.hooks.Load(); h != nil && h.afterAppend != nil {
		if err := h.afterAppend(); err != nil {
			return nil, err
		}
	}
	cp, err := s.publish(ctx, newSize)
	if err != nil {
		return nil, fmt.Errorf("publishing epoch %d: %w", epoch, err)
	}
	if localRoot != nil {
		c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin)
		if err != nil {
			return nil, fmt.Errorf("%w: own checkpoint: %v", errCorrupt, err)
		}
		if err := checkLogRoot(newSize, localRoot, c.Hash[:]); err != nil {
			return nil, err
		}
	}
	if h := s.hooks.Load(); h != nil && h.afterPublish != nil {
		if err := h.afterPublish(); err != nil {
			return nil, err
		}
	}
	s.signed.Store(&signedHead{size: newSize, note: cp})
	// Wait for the witness quorum: until then lookups are served from the
	// previous view, whose checkpoint has it (see cosignQuorum).
	served, err := s.cosignQuorum(ctx, cp)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing epoch %d: %w", epoch, err)
	}
	s.epoch, s.haveEpoch, s.size, s.lastTS, s.lastCut = epoch, true, newSize, ts, time.Now()
	v, err := s.buildView(ctx, cp, served)
	if err != nil {
		return nil, err
	}
	s.install(v)
	return v, nil
}

// buildView checks a published checkpoint against the map and builds the
// view lookups are served from.
func (s *Server) buildView(ctx context.Context, cp, served []byte) (*epochView, error) {
	c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin)
	if err != nil {
		return nil, fmt.Errorf("%w: own checkpoint: %v", errCorrupt, err)
	}
	if c.Size != s.size {
		return nil, fmt.Errorf("%w: checkpoint size %d, map and index cover %d", errCorrupt, c.Size, s.size)
	}
	var proof [][]byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		proof, err = s.inclusionProofTx(ctx, tx, c.Size-1, c.Size)
		return err
	}); err != nil {
		return nil, err
	}
	leaves, err := s.lastLeaf(ctx, c.Size)
	if err != nil {
		return nil, err
	}
	rec, err := klog.ParseEpochRecord(leaves[0])
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint's last leaf: %v", errCorrupt, err)
	}
	mroot, err := s.m.Root(rec.Epoch)
	if err != nil || mroot != rec.MapRoot || rec.Epoch != s.epoch {
		return nil, fmt.Errorf("%w: EpochRecord %d does not match the map (epoch %d)", errCorrupt, rec.Epoch, s.epoch)
	}
	return &epochView{
		epoch: rec.Epoch, size: c.Size, mapRoot: rec.MapRoot, timestamp: rec.Timestamp,
		checkpoint: served, record: leaves[0], recordProof: proof,
		next: make(chan struct{}), cons: map[uint64][][]byte{},
	}, nil
}

func (s *Server) install(v *epochView) {
	old := s.view.Swap(v)
	if old != nil {
		close(old.next)
	}
}

// sequencer cuts epochs until Close.
func (s *Server) sequencer() {
	defer close(s.seqDone)
	s.sequencing.Store(true)
	if s.startRecovering {
		if err := s.resync(context.Background(), nil); err != nil {
			if err != errClosing {
				s.cfg.Logf("directory: recovery failed, sequencer stopped: %v", err)
			}
			s.setFailed(err)
			<-s.closing
			return
		}
	}
	t := time.NewTicker(s.cfg.EpochInterval)
	defer t.Stop()
	s.lastCut = time.Now()
	for {
		stop := func() {
			s.mu.Lock()
			s.failed = errors.New("directory closed")
			s.mu.Unlock()
			s.failQueued(apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shutting down"))
		}
		if s.awaitViewQuorum() != nil { // only Close interrupts it
			stop()
			return
		}
		select {
		case <-s.closing:
			stop()
			return
		case <-t.C:
		case <-s.kick:
		}
		for {
			batch := s.take()
			if len(batch) == 0 && time.Since(s.lastCut) < s.cfg.EmptyEpochInterval {
				break
			}
			if err := s.cut(batch); err != nil {
				return
			}
			if len(s.queue) < s.cfg.MaxBatch {
				break
			}
		}
	}
}

// take removes up to MaxBatch entries from the queue.
func (s *Server) take() []*entry {
	var batch []*entry
	for len(batch) < s.cfg.MaxBatch {
		select {
		case e := <-s.queue:
			batch = append(batch, e)
			s.dequeued(e)
		default:
			return batch
		}
	}
	return batch
}

// cut runs one epoch and acknowledges its entries. A failure fails the
// batch and everything queued; the sequencer then resynchronizes from the
// log, or stops (returning the error) if it cannot.
func (s *Server) cut(batch []*entry) error {
	ctx := context.Background()
	batch, err := s.dropStale(batch)
	if err != nil {
		s.cfg.Logf("directory: checking the batch against the map: %v", err)
	}
	v, err := s.runEpoch(ctx, batch, false)
	if err == nil {
		s.mu.Lock()
		for _, e := range batch {
			if s.pending[e.index] == e {
				delete(s.pending, e.index)
			}
		}
		s.mu.Unlock()
		for _, e := range batch {
			e.done <- result{epoch: v.epoch, logIndex: e.logIndex, checkpoint: v.checkpoint}
		}
		return nil
	}
	s.cfg.Logf("directory: epoch %d failed: %v", s.epoch+1, err)
	fail := epochFailure(err)
	for _, e := range batch {
		e.done <- result{err: fail}
	}
	s.failQueued(fail)
	if errors.Is(err, errCrash) || errors.Is(err, errClosing) {
		s.setFailed(err)
		return err
	}
	if rerr := s.resync(ctx, err); rerr != nil {
		if rerr != errClosing {
			s.cfg.Logf("directory: recovery failed, sequencer stopped: %v", rerr)
		}
		s.setFailed(rerr)
		return rerr
	}
	return nil
}

func (s *Server) setFailed(err error) {
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
	s.failQueued(apierr.New(codes.Unavailable, apierr.Unavailable, "the directory's sequencer stopped after a failure"))
}

// failQueued fails every queued entry and forgets every pending one.
func (s *Server) failQueued(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		select {
		case e := <-s.queue:
			s.queuedBytes -= int64(len(e.leaf))
			e.done <- result{err: err}
		default:
			clear(s.pending)
			return
		}
	}
}
