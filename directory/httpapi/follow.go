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

// ResetInfo is a directory reset found in the log. A reset is logged
// pending: it takes effect at EffectiveAt unless the account's next entry,
// logged before then, cancels it (a state keeping the old root key).
type ResetInfo struct {
	LogIndex    uint64    `json:"log_index"`
	UserID      string    `json:"user_id"`
	Version     uint64    `json:"version"`
	Reason      string    `json:"reason"`
	Time        time.Time `json:"time"`         // logged ("pending since")
	EffectiveAt time.Time `json:"effective_at"` // end of the window
	// Status is "pending" (window open, not cancelled), "cancelled" or
	// "in effect"; set by Snapshot from the log and the clock.
	Status string `json:"status"`

	index     [32]byte // the account's VRF index
	oldRK     [32]byte // the root key in effect before the reset
	cancelled bool     // the next entry of the account kept oldRK
	decided   bool     // the next entry of the account was seen
}

// resetStatus returns r's status at now.
func (r *ResetInfo) resetStatus(now time.Time) string {
	switch {
	case r.cancelled:
		return "cancelled"
	case r.decided || !now.Before(r.EffectiveAt):
		return "in effect"
	default:
		return "pending"
	}
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
	// PendingResets counts the resets of RecentReset whose window is open.
	PendingResets int
	Witnesses     []WitnessInfo
	Quorum        int
	Cosigners     int // valid trusted cosignatures on the latest checkpoint
	LastSync      time.Time
	LastError     string // the last sync error ("" after a success)
	Corrupt       bool   // the log did not match a checkpoint: tiles are frozen
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
	now := f.now()
	for i := range s.RecentReset {
		s.RecentReset[i].Status = s.RecentReset[i].resetStatus(now)
		if s.RecentReset[i].Status == "pending" {
			s.PendingResets++
		}
	}
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
			if l.Update != klog.UpdateReset {
				f.noteFollowUp(l)
			}
			if l.Update == klog.UpdateReset {
				f.snap.Resets++
				ri := ResetInfo{LogIndex: idx, Version: l.Version, index: l.Index}
				if a, err := devices.ParseResetAuthorization(l.Payload); err == nil {
					ri.UserID, ri.Reason, ri.Time = a.UserID, a.Reason.String(), a.Time.UTC()
					ri.EffectiveAt = a.EffectiveAt.UTC()
					if a.Current != nil {
						ri.oldRK = a.Current.IdentityKey
					}
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

// noteFollowUp records whether the account update u, the entry after a
// listed reset of the same account, cancelled it (kept the old root key).
func (f *follower) noteFollowUp(u *klog.AccountUpdate) {
	for i := range f.snap.RecentReset {
		r := &f.snap.RecentReset[i]
		if r.decided || r.index != u.Index || u.Version != r.Version+1 {
			continue
		}
		r.decided = true
		if st, err := devices.ParseAccountState(u.Payload); err == nil && st.IdentityKey == r.oldRK {
			r.cancelled = true
		}
	}
}
