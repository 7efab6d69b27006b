package httpapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/tiles"
	"github.com/keyline/keyline/verifier"
)

// Bounds on the history the follower keeps in memory.
const (
	maxEpochHistory = 500 // epochs shown in the status chart
	maxResetHistory = 100 // resets listed on the status page
)

// EpochPoint is one epoch as the follower saw it in the log.
type EpochPoint struct {
	Epoch   uint64
	Time    time.Time // the EpochRecord timestamp
	Size    uint64    // log size after the epoch (its record's index + 1)
	Updates int       // account updates in the epoch
	MapRoot string    // the first 8 bytes of the map root, hex
}

// ResetInfo is a directory reset found in the log.
type ResetInfo struct {
	LogIndex uint64
	UserID   string
	Version  uint64
	Reason   string
	Time     time.Time
}

// WitnessInfo is what the follower knows of one trusted witness.
type WitnessInfo struct {
	Name         string
	CosignedSize uint64    // largest checkpoint size seen with its valid cosignature
	LastSeen     time.Time // when the follower first saw that cosignature
	InLatest     bool      // the latest checkpoint carries its cosignature
}

// Snapshot is the follower's view at one moment.
type Snapshot struct {
	Synced      bool // a checkpoint verified and its tiles synced
	Checkpoint  []byte
	Size        uint64
	Root        [32]byte
	Epoch       EpochPoint // the latest epoch (valid if Synced and Size > 0)
	Epochs      []EpochPoint
	Updates     uint64 // account update leaves in the log
	Resets      uint64 // reset leaves in the log
	RecentReset []ResetInfo
	Witnesses   []WitnessInfo
	Quorum      int
	Cosigners   int // valid trusted cosignatures on the latest checkpoint
	LastSync    time.Time
	LastError   string // the last sync error ("" after a success)
	Corrupt     bool   // the log did not match a checkpoint: tiles are frozen
}

// follower tails the log.
type follower struct {
	src   verifier.Source
	trust *verifier.Trust
	tiles *tiles.Server
	now   func() time.Time
	onErr func(error)

	mu   sync.Mutex
	snap Snapshot
	// updates in the epoch being read (leaves since the last EpochRecord)
	pendingUpdates int
	witness        map[string]*WitnessInfo
}

func newFollower(src verifier.Source, t *verifier.Trust) *follower {
	f := &follower{src: src, trust: t, tiles: tiles.NewServer(src), now: time.Now, witness: map[string]*WitnessInfo{}}
	f.snap.Quorum = t.Quorum
	for _, w := range t.Witnesses {
		f.witness[w.Name()] = &WitnessInfo{Name: w.Name()}
	}
	return f
}

// snapshot returns a copy of the current view.
func (f *follower) snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Epochs = append([]EpochPoint(nil), s.Epochs...)
	s.RecentReset = append([]ResetInfo(nil), s.RecentReset...)
	s.Witnesses = nil
	for _, w := range f.trust.Witnesses {
		s.Witnesses = append(s.Witnesses, *f.witness[w.Name()])
	}
	return s
}

// poll fetches the directory's checkpoint, verifies its log signature and
// syncs the tiles and statistics to it.
func (f *follower) poll(ctx context.Context) error {
	err := f.pollOnce(ctx)
	f.mu.Lock()
	f.snap.LastSync = f.now()
	if err != nil {
		f.snap.LastError = err.Error()
	} else {
		f.snap.LastError = ""
	}
	f.mu.Unlock()
	if err != nil && f.onErr != nil {
		f.onErr(err)
	}
	return err
}

func (f *follower) pollOnce(ctx context.Context) error {
	cp, err := f.src.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("fetching the checkpoint: %w", err)
	}
	verifiers := []note.Verifier{f.trust.Log}
	for _, w := range f.trust.Witnesses {
		verifiers = append(verifiers, w)
	}
	n, err := note.Open(cp, note.VerifierList(verifiers...))
	if err != nil {
		return fmt.Errorf("the directory's checkpoint does not verify: %w", err)
	}
	var logSigned bool
	var cosigners []string
	for _, s := range n.Sigs {
		if s.Hash == f.trust.Log.KeyHash() && s.Name == f.trust.Log.Name() {
			logSigned = true
		} else if _, ok := f.witness[s.Name]; ok {
			cosigners = append(cosigners, s.Name)
		}
	}
	c, err := klog.ParseCheckpoint([]byte(n.Text))
	if err != nil || !logSigned || c.Origin != f.trust.Origin {
		return fmt.Errorf("the directory's checkpoint is not signed by the log key of %s", f.trust.Origin)
	}
	if err := f.tiles.Sync(ctx, cp, f.leaves); err != nil {
		if errors.Is(err, tiles.ErrMismatch) {
			f.mu.Lock()
			f.snap.Corrupt = true
			f.mu.Unlock()
		}
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Size < f.snap.Size {
		return nil // a concurrent poll already installed a newer checkpoint
	}
	f.snap.Synced, f.snap.Checkpoint, f.snap.Size, f.snap.Root = true, cp, c.Size, c.Hash
	f.snap.Cosigners = len(cosigners)
	for _, w := range f.witness {
		w.InLatest = false
	}
	for _, name := range cosigners {
		w := f.witness[name]
		w.InLatest = true
		if c.Size > w.CosignedSize || w.LastSeen.IsZero() {
			w.CosignedSize, w.LastSeen = c.Size, f.now()
		}
	}
	return nil
}

// leaves sees every new leaf once, in order (tiles.Server.Sync's callback).
func (f *follower) leaves(first uint64, leaves [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, raw := range leaves {
		idx := first + uint64(i)
		l, err := klog.ParseLeaf(raw)
		if err != nil {
			continue // the auditor reports malformed leaves; the root matched
		}
		switch l := l.(type) {
		case *klog.AccountUpdate:
			f.snap.Updates++
			f.pendingUpdates++
			if l.Update == klog.UpdateReset {
				f.snap.Resets++
				ri := ResetInfo{LogIndex: idx, Version: l.Version}
				if a, err := devices.ParseResetAuthorization(l.Payload); err == nil {
					ri.UserID, ri.Reason, ri.Time = a.UserID, a.Reason.String(), a.Time.UTC()
				}
				f.snap.RecentReset = append(f.snap.RecentReset, ri)
				if len(f.snap.RecentReset) > maxResetHistory {
					f.snap.RecentReset = f.snap.RecentReset[1:]
				}
			}
		case *klog.EpochRecord:
			p := EpochPoint{Epoch: l.Epoch, Time: time.Unix(int64(min(l.Timestamp, 1<<62)), 0).UTC(), Size: idx + 1, Updates: f.pendingUpdates, MapRoot: fmt.Sprintf("%x", l.MapRoot[:8])}
			f.pendingUpdates = 0
			f.snap.Epoch = p
			f.snap.Epochs = append(f.snap.Epochs, p)
			if len(f.snap.Epochs) > maxEpochHistory {
				f.snap.Epochs = f.snap.Epochs[len(f.snap.Epochs)-maxEpochHistory:]
			}
		}
	}
}
