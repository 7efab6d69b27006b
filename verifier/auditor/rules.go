package auditor

import (
	"errors"
	"fmt"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// A Rule names one rule of the log that the auditor enforces. Every Rule is
// also an error, so a *Violation matches its rule with errors.Is:
//
//	errors.Is(err, auditor.RuleVersionSkip)
type Rule string

func (r Rule) Error() string { return "auditor: rule " + string(r) + " violated" }

// The rules, in the order the auditor checks them for one entry. Their string
// values appear in evidence files.
const (
	// RuleMalformedLeaf: a leaf does not decode (log.ParseLeaf).
	RuleMalformedLeaf Rule = "malformed-leaf"
	// RulePayload: an AccountUpdate's payload does not decode as its kind
	// requires (AccountState for create/update, ResetAuthorization for
	// reset), or its state's version differs from the leaf's version.
	RulePayload Rule = "payload"
	// RuleCreateExisting: a create (version 1) for an index already in the log.
	RuleCreateExisting Rule = "create-existing"
	// RuleVersionRewrite: an index's version does not increase (a version
	// already in the log is written again, or an older one).
	RuleVersionRewrite Rule = "version-rewrite"
	// RuleVersionSkip: an index's version jumps over a version (or a new
	// index does not start at 1).
	RuleVersionSkip Rule = "version-skip"
	// RulePrevHash: prev_hash differs from the entry hash of the index's
	// previous version's leaf.
	RulePrevHash Rule = "prev-hash"
	// RuleCreate: a create's AccountState fails devices.VerifyCreate for a
	// reason not named by a more specific rule.
	RuleCreate Rule = "create"
	// RuleSignature: an AccountState is not validly signed by the identity
	// key it must be signed by.
	RuleSignature Rule = "signature"
	// RuleIdentityChanged: a normal update changes the identity key (a
	// silent reset: only a reset signed by the reset key may).
	RuleIdentityChanged Rule = "identity-changed"
	// RuleDeviceCert: a DeviceCert is not doubly signed (IK signature and
	// the device's back-signature) or its keys are unusable: key
	// substitution.
	RuleDeviceCert Rule = "device-cert"
	// RuleRevokedDevice: a revoked device is listed again.
	RuleRevokedDevice Rule = "revoked-device"
	// RuleRevocation: a revocation was dropped or altered, or names a device
	// that was not in the account.
	RuleRevocation Rule = "revocation"
	// RuleUserID: a version names a different user id than the index's
	// previous version.
	RuleUserID Rule = "user-id-changed"
	// RuleUserIndex: one user id appears at two VRF indexes (the VRF is a
	// function: a user id has exactly one index).
	RuleUserIndex Rule = "user-id-two-indexes"
	// RuleTransition: an update fails devices.VerifyTransition for another
	// reason (state version or previous-state hash, timestamps).
	RuleTransition Rule = "transition"
	// RuleReset: a reset fails devices.VerifyReset (not signed by the
	// directory reset key, or inconsistent with the states it links).
	RuleReset Rule = "reset"
	// RuleStaleSigningKey: an update is signed by an account signing key
	// of an older generation than the previous version's (a rotated-out
	// key, e.g. a stolen device's, published after the owner's rotation).
	RuleStaleSigningKey Rule = "stale-signing-key"
	// RuleSigningKeyCert: a version changes the account signing key
	// without moving to exactly the next generation certified by the
	// account's root key, or its SigningKeyCert does not verify.
	RuleSigningKeyCert Rule = "signing-key-cert"
	// RuleResetWindow: a reset's window is shorter than the trust
	// configuration's reset_window; or the version after a pending reset
	// breaks the window: a state signed by the reset's new keys timestamped
	// before the reset takes effect (a reset applied early), or a
	// cancellation by the previous keys timestamped after the window.
	// (Applying a reset after the owner cancelled it means publishing the
	// new keys after the cancelling version: RuleIdentityChanged.)
	RuleResetWindow Rule = "reset-window"
	// RuleResetLogTime: the version after a reset is logged in an epoch
	// whose timestamp contradicts the reset's window: an update by the
	// reset's new keys in an epoch timestamped before effective_at (the
	// reset applied early, even with a forward-dated state), or a
	// cancellation in an epoch timestamped CancelLogSlack (60 s) or more
	// after effective_at (held back until the reset had taken effect).
	RuleResetLogTime Rule = "reset-log-time"
	// RuleEpochNumber: epoch records are not numbered 0, 1, 2, ...
	RuleEpochNumber Rule = "epoch-number"
	// RuleEpochTime: an epoch record's timestamp is before the previous one's.
	RuleEpochTime Rule = "epoch-time"
	// RuleMapRoot: an epoch record's map root differs from the root
	// recomputed from the log.
	RuleMapRoot Rule = "map-root"
	// RuleCheckpointEnd: a checkpoint's last leaf is not an EpochRecord.
	RuleCheckpointEnd Rule = "checkpoint-end"
	// RuleSplitView: two checkpoints of the same size with different roots.
	RuleSplitView Rule = "split-view"
	// RuleFork: a checkpoint is not a prefix of a larger one (history
	// rewritten or truncated).
	RuleFork Rule = "fork"
)

var allRules = []Rule{
	RuleMalformedLeaf, RulePayload, RuleCreateExisting, RuleVersionRewrite, RuleVersionSkip,
	RulePrevHash, RuleCreate, RuleSignature, RuleIdentityChanged, RuleDeviceCert,
	RuleRevokedDevice, RuleRevocation, RuleUserID, RuleUserIndex, RuleTransition, RuleReset,
	RuleStaleSigningKey, RuleSigningKeyCert, RuleResetWindow, RuleResetLogTime,
	RuleEpochNumber, RuleEpochTime, RuleMapRoot, RuleCheckpointEnd, RuleSplitView, RuleFork,
}

// Rules returns every rule the auditor enforces.
func Rules() []Rule { return append([]Rule(nil), allRules...) }

func knownRule(r Rule) bool {
	for _, x := range allRules {
		if x == r {
			return true
		}
	}
	return false
}

// ErrViolation is matched (errors.Is) by every *Violation.
var ErrViolation = errors.New("auditor: the log violates a rule")

// A Violation is a rule the log broke, found by the auditor. Evidence is the
// transferable evidence file (see VerifyEvidence); EvidencePath is where the
// auditor wrote it.
type Violation struct {
	Rule     Rule
	LogIndex uint64 // offending leaf (for checkpoint rules: the checkpoint size)
	Detail   string
	Evidence []byte
	// EvidencePath is the file in the auditor's directory holding Evidence.
	EvidencePath string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("auditor: rule %s violated at log index %d: %s", string(v.Rule), v.LogIndex, v.Detail)
}

// Is reports whether target is ErrViolation or v's Rule.
func (v *Violation) Is(target error) bool {
	return target == ErrViolation || target == v.Rule
}

// entry is a decoded AccountUpdate with its leaf and decoded payload.
type entry struct {
	leaf  []byte
	u     *klog.AccountUpdate
	state *devices.AccountState       // the state this entry installs
	reset *devices.ResetAuthorization // non-nil for a reset
}

// decodeEntry decodes an AccountUpdate leaf and its payload. It returns the
// rule broken (RuleMalformedLeaf or RulePayload) and a detail on failure.
func decodeEntry(leaf []byte) (*entry, Rule, string) {
	l, err := klog.ParseLeaf(leaf)
	if err != nil {
		return nil, RuleMalformedLeaf, err.Error()
	}
	u, ok := l.(*klog.AccountUpdate)
	if !ok {
		return nil, "", ""
	}
	e := &entry{leaf: leaf, u: u}
	switch u.Update {
	case klog.UpdateCreate, klog.UpdateUpdate:
		s, err := devices.ParseAccountState(u.Payload)
		if err != nil {
			return nil, RulePayload, "payload is not an AccountState: " + err.Error()
		}
		e.state = s
	case klog.UpdateReset:
		a, err := devices.ParseResetAuthorization(u.Payload)
		if err != nil {
			return nil, RulePayload, "payload is not a ResetAuthorization: " + err.Error()
		}
		e.reset, e.state = a, a.NewState
	default:
		return nil, RulePayload, fmt.Sprintf("unknown update kind %d", u.Update)
	}
	if e.state.Version != u.Version {
		return nil, RulePayload, fmt.Sprintf("leaf version %d but its AccountState is version %d", u.Version, e.state.Version)
	}
	return e, "", ""
}

// mapDeviceErr names the rule behind an error of the devices package, or
// fallback.
func mapDeviceErr(err error, fallback Rule) Rule {
	switch {
	case errors.Is(err, devices.ErrUserMismatch):
		return RuleUserID
	case errors.Is(err, devices.ErrIdentityChanged):
		return RuleIdentityChanged
	case errors.Is(err, devices.ErrDeviceCert), errors.Is(err, devices.ErrDeviceName):
		return RuleDeviceCert
	case errors.Is(err, devices.ErrRevokedDevice):
		return RuleRevokedDevice
	case errors.Is(err, devices.ErrRevocation):
		return RuleRevocation
	case errors.Is(err, devices.ErrSigner):
		return RuleSignature
	case errors.Is(err, devices.ErrStaleSigningKey):
		return RuleStaleSigningKey
	case errors.Is(err, devices.ErrSigningKeyCert):
		return RuleSigningKeyCert
	case errors.Is(err, devices.ErrResetPending), errors.Is(err, devices.ErrResetWindow):
		return RuleResetWindow
	}
	return fallback
}

// checkEntry checks entry x against prev, the latest earlier entry of the same
// index (nil if the index is new). It returns "" if x is a valid successor.
func checkEntry(t *verifier.Trust, prev, x *entry) (Rule, string) {
	u := x.u
	if prev == nil {
		if u.Version != 1 {
			return RuleVersionSkip, fmt.Sprintf("first entry of index %x is version %d, not 1", u.Index[:8], u.Version)
		}
		if err := devices.VerifyCreate(x.state); err != nil {
			return mapDeviceErr(err, RuleCreate), err.Error()
		}
		return "", ""
	}
	p := prev.u
	switch {
	case u.Version == 1:
		return RuleCreateExisting, fmt.Sprintf("create for index %x, which has version %d", u.Index[:8], p.Version)
	case u.Version <= p.Version:
		return RuleVersionRewrite, fmt.Sprintf("version %d of index %x after version %d", u.Version, u.Index[:8], p.Version)
	case u.Version != p.Version+1:
		return RuleVersionSkip, fmt.Sprintf("version %d of index %x follows version %d", u.Version, u.Index[:8], p.Version)
	}
	if h := klog.EntryHash(prev.leaf); u.PrevHash != h {
		return RulePrevHash, fmt.Sprintf("prev_hash %x, entry hash of version %d is %x", u.PrevHash[:8], p.Version, h[:8])
	}
	if u.Update == klog.UpdateReset {
		if prev.reset != nil {
			return RuleReset, fmt.Sprintf("reset version %d of index %x follows the reset version %d", u.Version, u.Index[:8], p.Version)
		}
		if err := devices.VerifyReset(prev.state, x.reset, t.ResetKey, t.MinResetWindow()); err != nil {
			return mapDeviceErr(err, RuleReset), err.Error()
		}
		return "", ""
	}
	if prev.reset != nil {
		// The version after a reset: a cancellation by the previous keys
		// within the window, or an update by the new keys after it.
		if _, err := devices.VerifyAfterReset(nil, prev.reset, x.state); err != nil {
			return mapDeviceErr(err, RuleTransition), err.Error()
		}
		return "", ""
	}
	if err := devices.VerifyTransition(prev.state, x.state); err != nil {
		return mapDeviceErr(err, RuleTransition), err.Error()
	}
	return "", ""
}

// CancelLogSlack is how long (seconds) after a reset's effective_at the
// epoch holding its cancellation may be timestamped
// (devices.CancelLogSlack).
const CancelLogSlack = devices.CancelLogSlack

// checkResetLogTime checks the version after a reset (cancelled: signed
// with the previous keys) against the timestamp of the epoch record that
// closes it.
func checkResetLogTime(er *klog.EpochRecord, effectiveAt int64, cancelled bool) (Rule, string) {
	ts := int64(er.Timestamp)
	switch {
	case cancelled && ts >= effectiveAt+CancelLogSlack:
		return RuleResetLogTime, fmt.Sprintf("a cancellation of a reset is logged in epoch %d at %d, more than %d s after the reset took effect at %d", er.Epoch, ts, CancelLogSlack, effectiveAt)
	case !cancelled && ts < effectiveAt:
		return RuleResetLogTime, fmt.Sprintf("the reset's new keys are used in epoch %d at %d, before the reset takes effect at %d (applied early)", er.Epoch, ts, effectiveAt)
	}
	return "", ""
}

// checkEpoch checks epoch record e against prev, the previous epoch record
// (nil if none). Epochs are numbered from 0, the genesis epoch the directory
// closes over the empty map before any account; timestamps must not decrease.
func checkEpoch(prev, e *klog.EpochRecord) (Rule, string) {
	want := uint64(0)
	if prev != nil {
		want = prev.Epoch + 1
	}
	if e.Epoch != want {
		return RuleEpochNumber, fmt.Sprintf("epoch %d, want %d", e.Epoch, want)
	}
	if prev != nil && e.Timestamp < prev.Timestamp {
		return RuleEpochTime, fmt.Sprintf("epoch %d timestamp %d is before epoch %d's %d", e.Epoch, e.Timestamp, prev.Epoch, prev.Timestamp)
	}
	return "", ""
}
