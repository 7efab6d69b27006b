package directory

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
)

// Defaults applied by Open to zero Config fields.
const (
	DefaultOrigin             = "keyline.local/dir"
	DefaultEpochInterval      = time.Second
	DefaultEmptyEpochInterval = time.Hour
	DefaultMaxBatch           = 5000
	DefaultQueueSize          = 20000
	DefaultWitnessTimeout     = 5 * time.Second
	DefaultWitnessRetryMin    = time.Second
	DefaultWitnessRetryMax    = 30 * time.Second
	DefaultMaxRecvMsgSize     = 256 << 10
	DefaultVRFCacheSize       = 200000
	DefaultMaxCheckpointAge   = "24h"
	DefaultMaxResident        = 768 << 20
)

// Page read modes of lookups (Config.Pread).
const (
	PreadAuto = "auto" // pread when MaxResident is set and below the files' size
	PreadOn   = "on"   // always pread
	PreadOff  = "off"  // read through bbolt's memory maps
)

// State backends (Config.StateBackend).
const (
	StateBolt  = "bolt"  // embedded: directory.db in DataDir, one process
	StateMySQL = "mysql" // shared: MySQL/MariaDB (MySQLDSN), any number of processes
)

// Roles (Config.Role). Only the mysql state backend supports frontend and
// sequencer.
const (
	RoleAll       = "all"       // serve and sequence (the default)
	RoleFrontend  = "frontend"  // serve reads, queue validated updates; never writes state
	RoleSequencer = "sequencer" // sequence epochs while holding the lease (standby otherwise); also serves
)

// DefaultLeaseDuration is the default sequencer lease (Config.LeaseDuration).
const DefaultLeaseDuration = 10 * time.Second

// Log backends (Config.LogBackend).
const (
	BackendEmbedded = "embedded"
	BackendTrillian = "trillian"
)

// Config configures a directory server. Only DataDir is required; every
// zero field gets the default documented on it.
type Config struct {
	// DataDir holds the keys, trust.json and the databases (created with
	// mode 0700 if missing). See docs/api.md for the layout.
	DataDir string

	// Origin names the log: the first line of every checkpoint and the
	// name of the log key. It is fixed when the data dir is created; a
	// different non-empty Origin on a later start is an error.
	// Default DefaultOrigin ("keyline.local/dir").
	Origin string

	// EpochInterval is how often the sequencer cuts an epoch from the
	// queued updates (default 1s; tests use 10-50ms). An Update returns
	// after the epoch that contains it is published, so this bounds the
	// Update latency from below.
	EpochInterval time.Duration

	// EmptyEpochInterval is how long the sequencer waits, with no updates
	// queued, before it still cuts an empty epoch so that the served
	// checkpoint's EpochRecord timestamp stays fresh for clients
	// (default 1h; keep it well under the clients' max_checkpoint_age).
	EmptyEpochInterval time.Duration

	// MaxBatch is the most updates one epoch holds; when that many are
	// queued the epoch is cut at once (default 5000).
	MaxBatch int

	// QueueSize bounds the updates validated and waiting for an epoch.
	// When it is full Update fails at once with ResourceExhausted,
	// reason QUEUE_FULL (default 20000).
	QueueSize int

	// LogBackend is BackendEmbedded (default: a bbolt file log.db in
	// DataDir) or BackendTrillian (TrillianAddr, TrillianTreeID).
	LogBackend string
	// TrillianAddr is the trillian_log_server host:port (plaintext gRPC).
	TrillianAddr string
	// TrillianTreeID is the id of a PREORDERED_LOG tree.
	TrillianTreeID int64
	// TrillianIntegrationTimeout bounds how long one append waits for
	// trillian_log_signer to integrate its leaves (default 30s). When it
	// expires the epoch fails (its updates get Unavailable) and the
	// sequencer resynchronizes with the log, retrying with backoff.
	TrillianIntegrationTimeout time.Duration

	// Witnesses are asked to cosign every checkpoint (C2SP tlog-witness);
	// their vkeys and WitnessQuorum are written to trust.json.
	Witnesses []WitnessConfig
	// WitnessQuorum is how many witness cosignatures clients require
	// (written to trust.json; 0 <= WitnessQuorum <= len(Witnesses)).
	WitnessQuorum int
	// WitnessTimeout bounds one round of cosigning requests (default 5s).
	WitnessTimeout time.Duration
	// WitnessRetryMin and WitnessRetryMax bound the wait between rounds
	// while a checkpoint has fewer than WitnessQuorum cosignatures: the
	// first wait is WitnessRetryMin (default 1s), each next one doubles, up
	// to WitnessRetryMax (default 30s). Meanwhile the sequencer cuts no new
	// epoch and lookups are served from the last checkpoint that has the
	// quorum; once enough witnesses answer again, quorum clients work again
	// within WitnessRetryMax + WitnessTimeout, with no update needed.
	WitnessRetryMin time.Duration
	WitnessRetryMax time.Duration

	// MaxCheckpointAge is written to trust.json as max_checkpoint_age
	// (default "24h"). It must be a positive time.ParseDuration string
	// longer than EmptyEpochInterval (after its defaulting), or Open
	// fails with ErrConfig: otherwise every lookup during an idle period
	// would fail as stale.
	MaxCheckpointAge string

	// ResetWindow is how long a reset stays pending (cancellable by the
	// owner) before it takes effect; written to trust.json as reset_window
	// (default 72h; whole seconds, at least 1s).
	ResetWindow time.Duration

	// AdminToken authorizes Reset (metadata "authorization: Bearer
	// <token>"). Empty: a random token is created at first start in
	// DataDir/admin.token (mode 0600) and reused.
	AdminToken string

	// MaxRecvMsgSize bounds a gRPC request (default 256 KiB).
	MaxRecvMsgSize int

	// Limits bound the requests served over gRPC (rates, concurrency,
	// memory, keepalive); zero fields get their defaults (see Limits).
	Limits Limits

	// VRFCacheSize bounds the in-memory cache of VRF proofs by user id
	// (default 200000 entries; proofs of existing accounts are also kept
	// in the database).
	VRFCacheSize int

	// MaxResident bounds the resident memory (RSS) of the process in
	// bytes (default DefaultMaxResident, 768 MiB; negative: no bound): a
	// background loop samples it every 100 ms and, above the bound,
	// releases pages of the memory maps of the bbolt files (directory.db,
	// log.db, checkpoint.db) from the process. The kernel keeps them in
	// its page cache, so a later read maps them back without I/O while
	// memory allows (internal/resident). It cannot release the heap: if
	// that alone is above the bound, it is logged. Linux only; elsewhere
	// ignored.
	MaxResident int64

	// Pread is how lookups read directory.db and log.db: PreadAuto (the
	// default, ""), PreadOn or PreadOff. With pread a lookup copies the
	// pages it needs (the users record, the map tiles, the AccountUpdate
	// leaf) into the process's memory instead of touching bbolt's memory
	// maps, so they add nothing to the RSS and take no page fault
	// (internal/boltread). PreadAuto turns it on when MaxResident bounds
	// the RSS and the two files are larger than the bound, at Open or
	// after the epoch that grows them past it: then
	// nearly every page a mapped read touched would have to be faulted
	// back in after a trim. Writes and other reads use the maps.
	Pread string

	// NoSync disables fsync of the databases. Only for tests and
	// benchmarks: acknowledged updates may be lost on power failure.
	NoSync bool

	// Logf receives operational messages (nil: discarded).
	Logf func(format string, args ...any)

	// StateBackend is StateBolt (default: directory.db in DataDir) or
	// StateMySQL (MySQLDSN): the account index, history, map, epochs,
	// checkpoints, update queue and sequencer lease in a MySQL/MariaDB
	// database shared by every process of the directory
	// (docs/operations-scaleout.md). With StateMySQL the log must be shared too
	// (LogBackend trillian), except with Role all (one process; tests).
	StateBackend string
	// MySQLDSN is the go-sql-driver/mysql DSN of the state database,
	// "user:pass@tcp(host:port)/dbname".
	MySQLDSN string
	// Role is RoleAll (default), RoleFrontend or RoleSequencer.
	Role string
	// LeaseDuration is the sequencer lease (default 10s): a standby takes
	// over at most this long after the active sequencer stopped renewing.
	LeaseDuration time.Duration
	// LeaseHolder names this process in the lease row (default
	// host:pid:random).
	LeaseHolder string

	// sharedLog, if set, is the log of a StateMySQL directory (tests: one
	// log shared by several in-process servers).
	sharedLog klog.Backend
	// remoteLog, set by tests, is a log backend the directory treats like a
	// remote one (Trillian): checkpoints in checkpoint.db, Merkle proofs from
	// the log node cache. The directory closes it.
	remoteLog klog.Backend
}

// WitnessConfig is one witness.
type WitnessConfig struct {
	// URL is the witness's base URL; add-checkpoint is POSTed to
	// URL + "/add-checkpoint".
	URL string
	// VKey is the witness's cosignature/v1 verifier key
	// "<name>+<hex id>+<base64(0x04||pubkey)>".
	VKey string
	// Client, if set, is used instead of an HTTP client for URL (tests,
	// in-process witnesses).
	Client Cosigner
}

// testHooks lets tests inject faults between the sequencer's steps.
type testHooks struct {
	afterAppend  func() error // after the log Append, before Publish
	afterPublish func() error // after Publish, before the map/index commit
	// publish runs before every publish of the given log size; an error
	// fails it (a checkpoint store that cannot be written).
	publish func(size uint64) error
}

// ErrConfig is wrapped by every configuration error from Open.
var ErrConfig = errors.New("directory: bad config")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrConfig}, a...)...) }
	if cfg.DataDir == "" {
		return cfg, bad("DataDir is required")
	}
	if cfg.EpochInterval == 0 {
		cfg.EpochInterval = DefaultEpochInterval
	}
	if cfg.EpochInterval < time.Millisecond {
		return cfg, bad("EpochInterval %v is below 1ms", cfg.EpochInterval)
	}
	if cfg.EmptyEpochInterval == 0 {
		cfg.EmptyEpochInterval = DefaultEmptyEpochInterval
	}
	if cfg.EmptyEpochInterval < cfg.EpochInterval {
		cfg.EmptyEpochInterval = cfg.EpochInterval
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxBatch < 1 || cfg.QueueSize < 1 {
		return cfg, bad("MaxBatch and QueueSize must be positive")
	}
	switch cfg.LogBackend {
	case "":
		cfg.LogBackend = BackendEmbedded
	case BackendEmbedded:
	case BackendTrillian:
		if cfg.TrillianAddr == "" || cfg.TrillianTreeID == 0 {
			return cfg, bad("the trillian backend needs TrillianAddr and TrillianTreeID")
		}
		if cfg.TrillianIntegrationTimeout < 0 {
			return cfg, bad("TrillianIntegrationTimeout %v is negative", cfg.TrillianIntegrationTimeout)
		}
	default:
		return cfg, bad("unknown LogBackend %q (want %q or %q)", cfg.LogBackend, BackendEmbedded, BackendTrillian)
	}
	if cfg.WitnessQuorum < 0 || cfg.WitnessQuorum > len(cfg.Witnesses) {
		return cfg, bad("WitnessQuorum %d not between 0 and the %d witnesses", cfg.WitnessQuorum, len(cfg.Witnesses))
	}
	for i, w := range cfg.Witnesses {
		if w.VKey == "" || (w.URL == "" && w.Client == nil) {
			return cfg, bad("witness %d needs a URL (or Client) and a VKey", i)
		}
	}
	if cfg.WitnessTimeout == 0 {
		cfg.WitnessTimeout = DefaultWitnessTimeout
	}
	if cfg.WitnessRetryMin == 0 {
		cfg.WitnessRetryMin = DefaultWitnessRetryMin
	}
	if cfg.WitnessRetryMax == 0 {
		cfg.WitnessRetryMax = DefaultWitnessRetryMax
	}
	if cfg.WitnessRetryMin < 0 || cfg.WitnessRetryMax < cfg.WitnessRetryMin {
		return cfg, bad("need 0 < WitnessRetryMin (%v) <= WitnessRetryMax (%v)", cfg.WitnessRetryMin, cfg.WitnessRetryMax)
	}
	if cfg.MaxCheckpointAge == "" {
		cfg.MaxCheckpointAge = DefaultMaxCheckpointAge
	}
	maxAge, err := time.ParseDuration(cfg.MaxCheckpointAge)
	if err != nil || maxAge <= 0 {
		return cfg, bad("MaxCheckpointAge %q is not a positive duration (like \"24h\")", cfg.MaxCheckpointAge)
	}
	if maxAge <= cfg.EmptyEpochInterval {
		return cfg, bad("MaxCheckpointAge %v is not longer than EmptyEpochInterval %v: with no updates the directory "+
			"cuts a fresh epoch only every EmptyEpochInterval, so clients would reject every lookup as stale "+
			"during idle periods; raise MaxCheckpointAge (or lower EmptyEpochInterval)", maxAge, cfg.EmptyEpochInterval)
	}
	if cfg.ResetWindow == 0 {
		cfg.ResetWindow = devices.DefaultResetWindow
	}
	if cfg.ResetWindow < time.Second || cfg.ResetWindow%time.Second != 0 {
		return cfg, bad("ResetWindow %v is not a positive whole number of seconds", cfg.ResetWindow)
	}
	if cfg.MaxRecvMsgSize == 0 {
		cfg.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if err := cfg.Limits.withDefaults(); err != nil {
		return cfg, err
	}
	if cfg.VRFCacheSize == 0 {
		cfg.VRFCacheSize = DefaultVRFCacheSize
	}
	if cfg.MaxResident == 0 {
		cfg.MaxResident = DefaultMaxResident
	}
	switch cfg.Pread {
	case "":
		cfg.Pread = PreadAuto
	case PreadAuto, PreadOn, PreadOff:
	default:
		return cfg, bad("unknown Pread %q (want %q, %q or %q)", cfg.Pread, PreadAuto, PreadOn, PreadOff)
	}
	if strings.ContainsAny(cfg.AdminToken, " \t\r\n") {
		return cfg, bad("AdminToken must not contain whitespace")
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := cfg.sharedDefaults(); err != nil {
		return cfg, err
	}
	return cfg, nil
}
