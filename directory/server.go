// The Server type and its life cycle: opening (keys, log, stores, recovery,
// sequencer start) and closing. Recovery is in recovery.go, the epoch
// sequencer in sequencer.go, update validation in update.go, lookups in
// lookup.go.

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

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/mapdb"
	"github.com/keyline/keyline/internal/boltread"
	"github.com/keyline/keyline/internal/resident"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
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
	// pread reads directory.db for lookups when Config.Pread is on
	// (startPread, checkPread); nil: through bbolt's map.
	pread atomic.Pointer[boltread.Reader]

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

	// trimStop stops the resident memory trimmer, which closes trimDone
	// when it has (both nil if none runs).
	trimStop, trimDone chan struct{}

	closeOnce  sync.Once
	storesOnce sync.Once
	closeErr   error
	// freelistErr is Close's error writing the free-page lists
	// (syncFreelist).
	freelistErr error
	closing     chan struct{}
	seqDone     chan struct{}
	grpcMu      sync.Mutex
	grpcs       []interface{ Stop() }
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
		s.startTrimmer()
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
	// Recovery may read much of the files: bound the RSS from here.
	s.startTrimmer()
	if err := s.checkLayout(); err != nil {
		return nil, err
	}
	if s.m, err = mapdb.Open(s.db, bucketMap); err != nil {
		return nil, err
	}
	if err := s.startPread(); err != nil {
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

// startTrimmer starts the loop that keeps the process's RSS under
// Config.MaxResident by releasing pages of the bbolt files' maps
// (internal/resident). closeStores stops it before closing the files.
func (s *Server) startTrimmer() {
	if s.cfg.MaxResident <= 0 {
		return
	}
	var dbs []*bbolt.DB
	for _, db := range []*bbolt.DB{s.db, s.cpsDB} {
		if db != nil {
			dbs = append(dbs, db)
		}
	}
	if l, ok := s.backend.(*embedded.Log); ok {
		dbs = append(dbs, l.DB())
	}
	if len(dbs) == 0 {
		return
	}
	t := &resident.Trimmer{Budget: s.cfg.MaxResident, DBs: dbs, Logf: s.cfg.Logf}
	s.trimStop, s.trimDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.trimDone)
		t.Run(s.trimStop)
	}()
}

// startPread turns pread on for lookups if Config.Pread asks for it
// (checkPread): of directory.db for the users records and map tiles, and
// of log.db (embedded) for the AccountUpdate leaves.
func (s *Server) startPread() error {
	if s.cfg.Pread == PreadOn {
		return s.enablePread("Config.Pread is on")
	}
	return s.checkPread()
}

// checkPread turns pread on, with Config.Pread auto and a resident bound,
// once directory.db and log.db together are larger than the bound: at
// Open, and after every epoch the sequencer installs, so a directory that
// outgrows the bound while it runs switches without a restart. It never
// turns pread off (the files do not shrink).
func (s *Server) checkPread() error {
	if s.cfg.Pread != PreadAuto || s.cfg.MaxResident <= 0 || s.pread.Load() != nil || s.db == nil {
		return nil
	}
	files := fileSize(s.db.Path())
	if l, ok := s.backend.(*embedded.Log); ok {
		files += fileSize(l.DB().Path())
	}
	if files <= s.cfg.MaxResident {
		return nil
	}
	return s.enablePread(fmt.Sprintf("%d MiB of files, above the resident bound of %d MiB", files>>20, s.cfg.MaxResident>>20))
}

// enablePread opens the pread reader of directory.db and hands it to the
// map and the embedded log; why is logged.
func (s *Server) enablePread(why string) error {
	r, err := boltread.Open(s.db, 0)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if !s.pread.CompareAndSwap(nil, r) {
		return r.Close()
	}
	s.m.SetPread(r)
	if l, ok := s.backend.(*embedded.Log); ok {
		if err := l.SetPread(true); err != nil {
			return err
		}
	}
	s.cfg.Logf("directory: lookups read the databases with pread: %s", why)
	return nil
}

// fileSize returns the size of the file at path, 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
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
		s.freelistErr = errors.Join(syncFreelist(s.db), syncFreelist(s.cpsDB))
	})
	return errors.Join(s.freelistErr, s.closeStores())
}

// syncFreelist writes the free-page list of db (if not nil) to its file in
// one empty commit. The files are opened with NoFreelistSync, under which
// bbolt's Open rebuilds the list by walking every page of the file: seconds
// at 10M accounts, and the walk maps the whole file into the process (its
// size in RSS before the resident memory trimmer can start). After a clean
// Close the next Open reads the list instead; its first commit drops it
// again (meta.freelist = none), so after a crash Open walks as before.
func syncFreelist(db *bbolt.DB) error {
	if db == nil {
		return nil
	}
	db.NoFreelistSync = false
	if err := db.Update(func(*bbolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("directory: writing the free-page list of %s: %w", filepath.Base(db.Path()), err)
	}
	return nil
}

func (s *Server) closeStores() error {
	s.storesOnce.Do(func() {
		if s.trimStop != nil {
			close(s.trimStop)
			<-s.trimDone
		}
		var errs []error
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		errs = append(errs, s.pread.Load().Close())
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
