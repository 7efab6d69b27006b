package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
)

// Monitor errors.
var (
	// ErrNoOwnAccount: the client state has no own account to monitor.
	ErrNoOwnAccount = errors.New("verifier: no own account recorded (Client.SetOwn)")
	// ErrHistory: the directory's history of the account does not verify
	// (inclusion, index, version sequence, hash chain, or a transition
	// that breaks the account rules).
	ErrHistory = errors.New("verifier: account history rejected")
)

// AlertKind classifies what a monitor check found.
type AlertKind int

const (
	// AlertUnexpectedUpdate: a version the owner did not make, signed by
	// the account's identity key (someone holds the IK or the paper key).
	AlertUnexpectedUpdate AlertKind = iota + 1
	// AlertReset: a directory reset replaced the identity key.
	AlertReset
	// AlertVersionBackwards: the map serves a version older than the one
	// the owner published.
	AlertVersionBackwards
	// AlertHiddenEntry: a version the owner made is missing from the log
	// history or was replaced by another entry.
	AlertHiddenEntry
	// AlertHistoryTruncated: the history does not reach the latest entry
	// the lookup served.
	AlertHistoryTruncated
	// AlertAccountMissing: the map proves the owner's account absent.
	AlertAccountMissing
	// AlertResetPending: a directory reset of the account is logged and
	// pending; it takes effect at the end of its window unless the owner
	// cancels it (keyline account cancel-reset).
	AlertResetPending
	// AlertKeyRotated: a version the owner did not make switched the
	// account to a newer signing key generation, which only the root key
	// (the paper key) can certify: the owner rotated or recovered on
	// another device, or someone holding the paper key did. This device
	// cannot tell which, and the signing key it may hold (an older
	// generation) no longer signs for the account.
	AlertKeyRotated
)

// CutOffCommand is what the owner runs to cut off a device that signs
// with the current account signing key (a lost or stolen trusted device):
// the paper key certifies a new signing key generation, and everything
// the old one signs is refused from then on.
const CutOffCommand = "keyline account rotate-key"

// CancelResetCommand is what the owner runs on a trusted device (or with
// the paper key) to cancel a pending directory reset.
const CancelResetCommand = "keyline account cancel-reset"

func (k AlertKind) String() string {
	switch k {
	case AlertUnexpectedUpdate:
		return "unexpected update"
	case AlertReset:
		return "identity reset"
	case AlertVersionBackwards:
		return "version went backwards"
	case AlertHiddenEntry:
		return "own entry hidden or rewritten"
	case AlertHistoryTruncated:
		return "history truncated"
	case AlertAccountMissing:
		return "account missing"
	case AlertResetPending:
		return "reset pending"
	case AlertKeyRotated:
		return "signing key rotated"
	}
	return fmt.Sprintf("AlertKind(%d)", int(k))
}

// Alert is one problem a monitor check found.
type Alert struct {
	Kind     AlertKind
	Version  uint64
	LogIndex uint64
	Message  string
}

// DeviceInfo names a device that appeared or disappeared.
type DeviceInfo struct {
	ID   devices.DeviceID
	Name string
	// Revocation is set for a removed device that the new state revokes.
	Revocation *devices.Revocation
}

// Change is one account version the owner did not make, verified against
// the version before it.
type Change struct {
	Version   uint64
	LogIndex  uint64
	Kind      klog.UpdateKind
	EntryHash [32]byte
	// SignerIK is the identity key that signed the new AccountState; for a
	// reset it is the new IK, and ByResetKey is true (the directory reset
	// key authorized it).
	SignerIK   [32]byte
	ByResetKey bool
	// Generation is the account signing key generation of the new state;
	// PrevGeneration the one of the version before it (0 if the history
	// does not reach back to it). Generation > PrevGeneration > 0 is a
	// rotation, certified by the root key (AlertKeyRotated).
	Generation, PrevGeneration uint32
	Added                      []DeviceInfo
	Removed                    []DeviceInfo
	State                      *devices.AccountState
}

// MonitorReport is the result of one Monitor.Check.
type MonitorReport struct {
	UserID     string
	Checked    time.Time
	Checkpoint *VerifiedCheckpoint
	Expected   OwnAccount
	// Latest is the verified lookup of the own account.
	Latest *LookupResult
	// OK is true iff the directory serves exactly the expected version
	// and entry; then Changes and Alerts are empty.
	OK      bool
	Changes []Change
	Alerts  []Alert
}

// Monitor checks the owner's own account with one lookup per check.
type Monitor struct {
	Client *Client
}

// NewMonitor returns a Monitor using c (its state's Own account).
func NewMonitor(c *Client) *Monitor { return &Monitor{Client: c} }

// Check looks up the own account (verified like any lookup, then its state
// by every signature rule as the directory and auditors check it: ownMemo;
// a state that fails is an error) and compares
// the map's value with the expected own version and entry hash. Because
// auditors check that the map is exactly what the log implies, equality
// under a verified checkpoint means nobody else changed the account. If
// they differ, Check fetches the history from the version before the
// expected one (or the served one, if older), page by page up to the served
// version, verifies it (inclusion proofs, index, consecutive versions, entry hash
// chain, the devices.VerifyTransition rules / VerifyReset) and reports every version
// the owner did not make: devices added and removed, the signer (IK or the
// directory reset key), version and log index. It also flags a version
// that went backwards and an own entry missing or rewritten in the history.
//
// Verification failures are errors; what verified but is unexpected is in
// the report (OK false).
func (m *Monitor) Check(ctx context.Context) (*MonitorReport, error) {
	st, err := m.Client.State()
	if err != nil {
		return nil, err
	}
	if st.Own == nil {
		return nil, ErrNoOwnAccount
	}
	own := *st.Own
	rep := &MonitorReport{UserID: own.UserID, Checked: m.Client.now(), Expected: own}
	res, err := m.Client.Lookup(ctx, own.UserID)
	var snc *SafetyNumberChangedError
	switch {
	case errors.As(err, &snc) && snc.Result != nil:
		res = snc.Result // fully verified; only the pin differs
	case errors.Is(err, ErrAccountMissing):
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertAccountMissing, Version: own.Version, Message: err.Error()})
		return rep, nil
	case err != nil:
		return nil, err
	}
	rep.Latest, rep.Checkpoint = res, res.Checkpoint
	if !res.Found {
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertAccountMissing, Version: own.Version,
			Message: fmt.Sprintf("%s is proven absent in epoch %d; the owner published v%d", own.UserID, res.Epoch.Epoch, own.Version)})
		return rep, nil
	}
	memo, err := ownMemo(res)
	if err != nil {
		return nil, err
	}
	if matchesOwn(own, res.Version, res.EntryHash, res.State) {
		rep.OK = true
		return rep, nil
	}
	if res.Version < own.Version {
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertVersionBackwards, Version: res.Version, LogIndex: res.LogIndex,
			Message: fmt.Sprintf("the map serves v%d (log index %d), the owner published v%d", res.Version, res.LogIndex, own.Version)})
	}
	// From the version before the expected one, so that a rewritten own
	// entry is described against its predecessor.
	from := min(own.Version, res.Version)
	if from > 1 {
		from--
	}
	entries, err := historyFrom(ctx, m.Client.Trust, m.Client.Source, m.Client.Cache, memo, res, from)
	if err != nil {
		return nil, err
	}
	m.analyze(rep, own, res, entries)
	return rep, nil
}

// ownMemo checks the own account's served state by every rule, signatures
// included: the lookup verified it by the lookup rule
// (devices.VerifyAccountStateForLookup), which does not verify the device
// certs' account signing key signatures, but the owner's devices must see
// everything the directory and auditors check (docs/protocol.md §7.1). It
// returns a memo of its signatures for the history walk, which then checks
// every state by the full rules too (with an empty memo during a pending
// reset, when res.State is the unsigned previous state, whose certs
// devices.VerifyResetEntry verified in full).
func ownMemo(res *LookupResult) (*devices.SignatureMemo, error) {
	memo := devices.NewSignatureMemo()
	if res.State == nil || res.ResetPending != nil {
		return memo, nil
	}
	if err := memo.VerifyAccountState(res.State); err != nil {
		return nil, fail(ErrAccountState, err, "own account %s v%d", res.UserID, res.Version)
	}
	return memo, nil
}

// Accept makes the latest verified version in rep the expected own
// version, after the owner acknowledged the changes it reports.
func (m *Monitor) Accept(rep *MonitorReport) error {
	if rep.Latest == nil || !rep.Latest.Found {
		return errors.New("verifier: report has no verified latest entry to accept")
	}
	return m.Client.SetOwn(OwnAccount{UserID: rep.UserID, Version: rep.Latest.Version, EntryHash: rep.Latest.EntryHash})
}

func matchesOwn(own OwnAccount, version uint64, entryHash [32]byte, st *devices.AccountState) bool {
	if version != own.Version {
		return false
	}
	if own.EntryHash != ([32]byte{}) && entryHash != own.EntryHash {
		return false
	}
	if own.StateHash != ([32]byte{}) {
		h, err := st.Hash()
		if err != nil || h != own.StateHash {
			return false
		}
	}
	return true
}

// historyEntry is a verified history entry.
type historyEntry struct {
	HistoryEntry
	update    *klog.AccountUpdate
	entryHash [32]byte
	state     *devices.AccountState
	reset     *devices.ResetAuthorization
	// cancels is set on the entry that cancelled the pending reset before it.
	cancels bool
}

// verifyHistory verifies h for res's account: its checkpoint (trust,
// consistent with res's), VRF index, every entry's inclusion, index, version
// sequence from `from`, hash chain, payload and transitions. prev, if not
// nil, is the verified entry before h's first (the previous page's last):
// h's first entry must follow it like any other.
//
// The checkpoint and the VRF proof are checked through c (nil: no cache),
// so a history fetched right after a lookup does not verify the lookup's
// checkpoint note or VRF proof a second time. An update is checked against
// its predecessor, which this function verified (or prev, which it verified
// on the previous page), with devices.VerifyTransitionFrom: the result of
// devices.VerifyTransition, without verifying again the device certs the
// predecessor already carried under the same root and signing keys. States
// are checked by memo's rule: a lookup client's lookup memo does not verify
// a DeviceCert's account signing key signature that its state's signature
// covers (devices.NewLookupMemo), the monitor's memo verifies every
// signature.
func verifyHistory(ctx context.Context, t *Trust, src Source, c *Cache, memo *devices.SignatureMemo, res *LookupResult, h *HistoryBundle, from uint64, prev *historyEntry) ([]historyEntry, error) {
	cp, err := c.openCheckpoint(t, h.Checkpoint)
	if err != nil {
		return nil, fail(ErrCheckpoint, err, "history of %s", res.UserID)
	}
	lcp := res.Checkpoint
	switch {
	case cp.Size < lcp.Size:
		return nil, fail(ErrRollback, nil, "history checkpoint size %d is older than the lookup's %d", cp.Size, lcp.Size)
	case cp.Size == lcp.Size:
		if cp.Hash != lcp.Hash {
			return nil, &SplitViewError{Size: cp.Size, Old: lcp.Note, New: cp.Note, OldRoot: lcp.Hash, NewRoot: cp.Hash}
		}
	default:
		p, err := src.ConsistencyProof(ctx, lcp.Size, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("verifier: consistency proof %d -> %d: %w", lcp.Size, cp.Size, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, lcp.Size, cp.Size, p, lcp.Hash[:], cp.Hash[:]); err != nil {
			return nil, fail(ErrConsistency, err, "history checkpoint %d -> %d", lcp.Size, cp.Size)
		}
	}
	idx, err := c.verifyIndex(t, res.UserID, h.VRFProof)
	if err != nil {
		return nil, fail(ErrVRF, err, "history of %s", res.UserID)
	}
	if idx != res.Index {
		return nil, fail(ErrIndexMismatch, nil, "history VRF index differs from the lookup's")
	}
	out := make([]historyEntry, 0, len(h.Entries))
	for i, e := range h.Entries {
		he := historyEntry{HistoryEntry: e}
		if e.LogIndex >= cp.Size {
			return nil, fail(ErrHistory, nil, "entry %d: log index %d outside the tree of size %d", i, e.LogIndex, cp.Size)
		}
		if err := verifyInclusion(cp, e.LogIndex, e.Leaf, e.Inclusion); err != nil {
			return nil, fail(ErrHistory, err, "entry %d (log index %d) not included", i, e.LogIndex)
		}
		up, err := klog.ParseAccountUpdate(e.Leaf)
		if err != nil {
			return nil, fail(ErrHistory, err, "entry %d (log index %d)", i, e.LogIndex)
		}
		if up.Index != idx {
			return nil, fail(ErrIndexMismatch, nil, "history entry %d (log index %d) is for another index", i, e.LogIndex)
		}
		he.update, he.entryHash = up, klog.EntryHash(e.Leaf)
		p := prev
		if i > 0 {
			p = &out[i-1]
		}
		if p == nil {
			if up.Version < from {
				return nil, fail(ErrHistory, nil, "history starts at v%d, asked from v%d", up.Version, from)
			}
		} else {
			if e.LogIndex <= p.LogIndex {
				return nil, fail(ErrHistory, nil, "entry %d: log index %d not after %d", i, e.LogIndex, p.LogIndex)
			}
			if up.Version != p.update.Version+1 {
				return nil, fail(ErrHistory, nil, "version skip: v%d follows v%d (log index %d)", up.Version, p.update.Version, e.LogIndex)
			}
			if up.PrevHash != p.entryHash {
				return nil, fail(ErrHistory, nil, "v%d (log index %d) does not chain to v%d's entry hash", up.Version, e.LogIndex, p.update.Version)
			}
		}
		switch up.Update {
		case klog.UpdateReset:
			a, err := devices.ParseResetAuthorization(up.Payload)
			if err != nil {
				return nil, fail(ErrHistory, err, "v%d reset authorization", up.Version)
			}
			if p != nil {
				if p.reset != nil {
					return nil, fail(ErrHistory, nil, "v%d reset (log index %d) follows the reset v%d", up.Version, e.LogIndex, p.update.Version)
				}
				if err := devices.VerifyReset(p.state, a, t.ResetKey, t.resetWindow()); err != nil {
					return nil, fail(ErrHistory, err, "v%d reset (log index %d)", up.Version, e.LogIndex)
				}
			} else if err := devices.VerifyResetEntry(a, t.ResetKey, t.resetWindow()); err != nil {
				return nil, fail(ErrHistory, err, "v%d reset (log index %d)", up.Version, e.LogIndex)
			}
			he.reset, he.state = a, a.NewState
		default:
			s, answer := res.State, isLookupAnswer(res, e, up)
			if !answer {
				if s, err = devices.ParseAccountState(up.Payload); err != nil {
					return nil, fail(ErrHistory, err, "v%d account state", up.Version)
				}
			}
			switch {
			case p != nil && p.reset != nil:
				// The entry after a reset: a cancellation by the previous
				// keys within the window, or an update by the new keys
				// after it.
				he.cancels, err = devices.VerifyAfterReset(nil, p.reset, s) // as the directory and auditors: PreviousState()
			case p != nil && answer:
				// The lookup verified s (by the memo's rule: the lookup
				// rule, or in full for the monitor, ownMemo): only the
				// rules between p.state and s are left to check.
				err = devices.VerifyTransitionOfVerified(p.state, s)
			case p != nil:
				// p.state was verified: by this loop, or on the previous
				// page (prev).
				err = memo.VerifyTransitionFrom(p.state, s)
			case up.Update == klog.UpdateCreate:
				err = memo.VerifyCreate(s)
			default:
				err = memo.VerifyAccountState(s)
			}
			if err != nil {
				target := ErrHistory
				switch {
				case errors.Is(err, devices.ErrStaleSigningKey):
					target = ErrStaleSigningKey
				case errors.Is(err, devices.ErrResetPending), errors.Is(err, devices.ErrResetWindow):
					target = ErrResetWindow
				}
				return nil, fail(target, err, "v%d (log index %d)", up.Version, e.LogIndex)
			}
			he.state = s
		}
		if he.state.UserID != res.UserID || he.state.Version != up.Version {
			return nil, fail(ErrHistory, nil, "v%d (log index %d) carries the state of %s v%d", up.Version, e.LogIndex, he.state.UserID, he.state.Version)
		}
		out = append(out, he)
	}
	return out, nil
}

// isLookupAnswer reports whether the history entry e (parsed as up) is the
// AccountUpdate the verified lookup res answered with, carrying an
// AccountState (a create or update): its state is then res.State, which
// the lookup verified.
func isLookupAnswer(res *LookupResult, e HistoryEntry, up *klog.AccountUpdate) bool {
	return res.Found && res.State != nil && res.Reset == nil && res.ResetPending == nil &&
		(up.Update == klog.UpdateCreate || up.Update == klog.UpdateUpdate) &&
		e.LogIndex == res.LogIndex && bytes.Equal(e.Leaf, res.Leaf)
}

// analyze fills rep's Changes and Alerts from the verified history.
func (m *Monitor) analyze(rep *MonitorReport, own OwnAccount, res *LookupResult, entries []historyEntry) {
	prevOf := func(i int) *historyEntry {
		if i == 0 {
			return nil
		}
		return &entries[i-1]
	}
	ownAt := -1
	for i, e := range entries {
		if e.update.Version == own.Version {
			ownAt = i
		}
	}
	switch {
	case ownAt < 0:
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertHiddenEntry, Version: own.Version,
			Message: fmt.Sprintf("the history has no v%d, which the owner published", own.Version)})
	case !matchesOwn(own, own.Version, entries[ownAt].entryHash, entries[ownAt].state):
		e := entries[ownAt]
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertHiddenEntry, Version: own.Version, LogIndex: e.LogIndex,
			Message: fmt.Sprintf("v%d at log index %d is not the entry the owner published", own.Version, e.LogIndex)})
		rep.Changes = append(rep.Changes, describe(prevOf(ownAt), e))
	}
	for i, e := range entries {
		if e.update.Version <= own.Version {
			continue
		}
		c := describe(prevOf(i), e)
		rep.Changes = append(rep.Changes, c)
		kind := AlertUnexpectedUpdate
		who := fmt.Sprintf("signed by signing key generation %d of your root key %x...", e.state.Generation(), c.SignerIK[:8])
		todo := fmt.Sprintf("if you did not make it, a device holding your account signing key made it: cut it off with `%s` (needs your paper key)", CutOffCommand)
		switch {
		case c.ByResetKey && e.reset.Pending(epochTime(res.Epoch)):
			kind = AlertResetPending
			who = fmt.Sprintf("a DIRECTORY RESET (%s) logged at %s, pending until %s, new root key %x...", e.reset.Reason, e.reset.Time.UTC().Format(time.RFC3339), e.reset.EffectiveAt.UTC().Format(time.RFC3339), c.SignerIK[:8])
			todo = fmt.Sprintf("if you did not ask for it, cancel it before %s with `%s` on a trusted device (or `keyline account recover` with your paper key)", e.reset.EffectiveAt.UTC().Format(time.RFC3339), CancelResetCommand)
		case c.ByResetKey:
			kind = AlertReset
			who = fmt.Sprintf("authorized by the DIRECTORY RESET KEY, new root key %x...", c.SignerIK[:8])
			todo = "the reset took effect; your contacts see a new safety number"
		case c.Rotated():
			kind = AlertKeyRotated
			who = fmt.Sprintf("it ROTATED the account signing key from generation %d to %d, certified by your root key %x..., which only your paper key derives", c.PrevGeneration, c.Generation, c.SignerIK[:8])
			todo = fmt.Sprintf("this device cannot tell whether you did it (`keyline account rotate-key` or `keyline account recover` on another device) or someone holding your paper key did; a signing key of generation %d or older, as this device may hold, no longer signs for the account. If it was not you, your paper key is compromised: rotate again with it at once (`%s`) and ask the directory operator for a reset", c.PrevGeneration, CutOffCommand)
			if e.cancels {
				who += ", cancelling the pending reset before it"
			}
		case e.cancels:
			who += ", cancelling the pending reset before it"
		}
		rep.Alerts = append(rep.Alerts, Alert{Kind: kind, Version: c.Version, LogIndex: c.LogIndex,
			Message: fmt.Sprintf("v%d at log index %d was not made by this owner: %s; %s; %s", c.Version, c.LogIndex, who, deviceSummary(c), todo)})
	}
	var found bool
	for _, e := range entries {
		if e.update.Version == res.Version {
			found = e.entryHash == res.EntryHash && e.LogIndex == res.LogIndex
		}
	}
	if !found {
		rep.Alerts = append(rep.Alerts, Alert{Kind: AlertHistoryTruncated, Version: res.Version, LogIndex: res.LogIndex,
			Message: fmt.Sprintf("the history does not contain the served v%d at log index %d", res.Version, res.LogIndex)})
	}
}

// Rotated reports whether c switched the account to a newer signing key
// generation under the same root key (not a directory reset).
func (c *Change) Rotated() bool {
	return !c.ByResetKey && c.PrevGeneration > 0 && c.Generation > c.PrevGeneration
}

func describe(prev *historyEntry, e historyEntry) Change {
	c := Change{Version: e.update.Version, LogIndex: e.LogIndex, Kind: e.update.Update, EntryHash: e.entryHash,
		SignerIK: e.state.IdentityKey, ByResetKey: e.reset != nil, Generation: e.state.Generation(), State: e.state}
	switch {
	case prev != nil && prev.reset != nil && e.cancels:
		// A cancellation follows the state before the reset.
		if ps := prev.reset.PreviousState(); ps != nil {
			c.PrevGeneration = ps.Generation()
		}
	case prev != nil:
		c.PrevGeneration = prev.state.Generation()
	}
	for _, d := range e.state.Devices {
		if prev == nil || prev.state.Device(d.ID) == nil {
			c.Added = append(c.Added, DeviceInfo{ID: d.ID, Name: d.Name})
		}
	}
	if prev != nil {
		for _, d := range prev.state.Devices {
			if e.state.Device(d.ID) == nil {
				c.Removed = append(c.Removed, DeviceInfo{ID: d.ID, Name: d.Name, Revocation: e.state.Revoked(d.ID)})
			}
		}
	}
	return c
}

func deviceSummary(c Change) string {
	s := ""
	for _, d := range c.Added {
		s += fmt.Sprintf("added device %s %q; ", d.ID, d.Name)
	}
	for _, d := range c.Removed {
		s += fmt.Sprintf("removed device %s %q; ", d.ID, d.Name)
	}
	if s == "" {
		return "devices unchanged"
	}
	return s[:len(s)-2]
}
