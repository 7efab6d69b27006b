package verifier

import (
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// MaxFutureSkew bounds how far in the future (relative to the verifier's
// clock) an epoch timestamp may lie.
const MaxFutureSkew = 5 * time.Minute

// PinStatus says how the identity key served compares with the client's pin
// for that contact.
type PinStatus int

const (
	// PinNone: nothing to compare (the account does not exist).
	PinNone PinStatus = iota
	// PinNew: the contact was not pinned; the client pins the key served as
	// unverified (trust on first use).
	PinNew
	// PinMatch: the key equals the pinned, unverified key.
	PinMatch
	// PinMatchVerified: the key equals the pinned key the user verified
	// (compared safety numbers).
	PinMatchVerified
	// PinChanged: the key differs from the pinned but unverified key. This
	// is a warning, not an error: the client re-pins the new key as
	// unverified and must show the user that the safety number changed.
	// (A changed verified key is the error ErrSafetyNumberChanged.)
	// VerifyLookup alone cannot tell whether the change is allowed;
	// Client.Lookup accepts it only if the account's history shows a
	// directory reset (else ErrIdentityChanged).
	PinChanged
)

func (s PinStatus) String() string {
	switch s {
	case PinNone:
		return "none"
	case PinNew:
		return "new (unverified, trust on first use)"
	case PinMatch:
		return "matches unverified pin"
	case PinMatchVerified:
		return "matches verified pin"
	case PinChanged:
		return "CHANGED (unverified pin)"
	}
	return fmt.Sprintf("PinStatus(%d)", int(s))
}

// LookupResult is a fully verified lookup.
type LookupResult struct {
	UserID     string   // normalized
	Index      [32]byte // VRF index of UserID
	Checkpoint *VerifiedCheckpoint
	Epoch      klog.EpochRecord
	// Held reports that the bundle omitted the checkpoint and the lookup
	// was verified against the state's checkpoint and EpochRecord.
	Held bool

	// epochLeaf and epochInclusion are the verified EpochRecord leaf and
	// its inclusion proof in Checkpoint, which Apply keeps in the state.
	epochLeaf      []byte
	epochInclusion [][]byte

	// Found reports whether the account exists. The fields below are set
	// only if it does.
	Found     bool
	Version   uint64
	LogIndex  uint64
	Leaf      []byte
	EntryHash [32]byte
	Update    *klog.AccountUpdate
	// State is the account's current AccountState (for a reset in effect,
	// the new state the authorization installs). During a pending reset
	// (ResetPending) it holds the keys still in effect, from the reset
	// entry: devices.ResetAuthorization.PreviousState, an unsigned state
	// (zero Signature) of the previous version, for display, encryption
	// and as the base of a cancellation (devices.LinkAfterReset).
	State *devices.AccountState
	// Reset is the reset authorization if the latest entry is a directory
	// reset that has taken effect. Clients must show it loudly: the root
	// key was replaced by the directory, not by the user.
	Reset *devices.ResetAuthorization
	// ResetPending is set if the latest entry is a directory reset that
	// has not taken effect at the epoch's timestamp: State and IdentityKey
	// are still the previous keys, the safety number is unchanged, and the
	// owner can cancel it until ResetPending.EffectiveAt.
	ResetPending *devices.ResetAuthorization
	// IdentityKey is the root key (RK) public key in effect.
	IdentityKey [32]byte
	// Generation is the account signing key generation of State.
	Generation uint32

	Pin      PinStatus
	PinnedIK [32]byte // the previously pinned key, if there was one
	// Warnings lists everything the user should be told even though the
	// lookup verified (reset, changed unverified key).
	Warnings []string
}

// VerifyLookup verifies a lookup bundle for userID against the trust
// configuration and the client's state (nil: a client with no state). It is
// pure: it changes nothing, and returns a result only if every check passed:
//
//  0. the bundle's form: a bundle that omits the checkpoint (b.Held) must
//     omit the EpochRecord, its inclusion proof and the consistency proof
//     too, and st must hold a checkpoint and its EpochRecord, which are
//     then used instead (ErrBundleForm);
//  1. the checkpoint (served, or held in st): log signature, origin,
//     witness quorum (Trust.OpenCheckpoint);
//  2. against st's last verified checkpoint: no smaller size (ErrRollback),
//     the same root at the same size (*SplitViewError), a valid consistency
//     proof (ErrConsistency);
//  3. the EpochRecord (served, or held in st) is leaf size-1 of the
//     checkpoint (ErrEpochRecord) and its timestamp lies in
//     [now-MaxAge, now+MaxFutureSkew] (ErrStale);
//  4. the VRF proof for the normalized user id under Trust.VRF; the index is
//     vrf.Index(beta) (ErrVRF);
//  5. the map proof for exactly that index under the epoch's map root
//     (ErrMapProof). A proof of kind vmap.InclusionDerived (a present
//     account; the proof omits the map value) is checked in 6;
//  6. an AccountUpdate is served iff the map holds the index (ErrPresence;
//     a derived proof without an AccountUpdate is ErrPresence too);
//     its log index is before the EpochRecord and it parses
//     (ErrAccountUpdate), it is for the same index (ErrIndexMismatch), and
//     the map value is vmap.MapValue(version, log index, entry hash): a
//     full inclusion proof must carry that value (ErrMapValue), a derived
//     proof must lead to the map root with it (vmap.VerifyDerived;
//     ErrMapProof, since a wrong value and a wrong path look the same).
//     No log inclusion proof is checked: the map value binds the entry,
//     and auditors check that the map root is the one the log implies
//     (docs/protocol.md §7.1);
//  7. the payload: a create or update carries an AccountState that verifies
//     (ErrAccountState, ErrRevokedDevice) for this user (ErrUserMismatch)
//     at the entry's version (ErrVersionMismatch); a reset carries a
//     ResetAuthorization that verifies (devices.VerifyResetEntry: signed by
//     Trust.ResetKey, its new state and current keys verify; ErrReset) with
//     a window of at least Trust.ResetWindow (ErrResetWindow); if the
//     epoch's timestamp is before its EffectiveAt it is pending: the
//     previous keys are returned with Result.ResetPending and a warning,
//     otherwise it is reported in Result.Reset and Warnings;
//  8. the pin: a verified contact must keep its identity key
//     (*SafetyNumberChangedError); an unverified pin that changed is a
//     warning (PinChanged); a pinned contact must exist (ErrAccountMissing);
//     with the pinned key, the signing key generation must not be older
//     than the newest one seen for the contact (ErrStaleSigningKey).
func VerifyLookup(t *Trust, st *ClientState, userID string, b *LookupBundle, now time.Time) (*LookupResult, error) {
	return verifyLookup(t, st, userID, b, now, nil, nil)
}

// verifyLookup is VerifyLookup with an optional cache of verifications
// and an optional lookup memo (Cache.verifyLookupMemo).
func verifyLookup(t *Trust, st *ClientState, userID string, b *LookupBundle, now time.Time, c *Cache, memo *devices.SignatureMemo) (*LookupResult, error) {
	if t == nil || b == nil {
		return nil, errors.New("verifier: VerifyLookup: nil trust or bundle")
	}
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return nil, fail(ErrUserID, err, "%q", userID)
	}
	res := &LookupResult{UserID: uid}

	// 0. Form: the checkpoint, EpochRecord and inclusion proof come from
	// the bundle, or (held) all from the state.
	note, recLeaf, recProof := b.Checkpoint, b.EpochRecord, b.EpochRecordInclusion
	if b.Held() {
		if len(b.EpochRecord) != 0 || len(b.EpochRecordInclusion) != 0 || len(b.Consistency) != 0 {
			return nil, fail(ErrBundleForm, nil, "lookup of %s omits the checkpoint but carries an epoch record, its inclusion proof or a consistency proof", uid)
		}
		if st == nil || st.Checkpoint == nil {
			return nil, fail(ErrBundleForm, nil, "lookup of %s omits the checkpoint, but the client holds none (it sent no known tree size)", uid)
		}
		if st.EpochRecord == nil {
			return nil, fail(ErrBundleForm, nil, "lookup of %s omits the checkpoint, but the client holds no epoch record for its checkpoint", uid)
		}
		note, recLeaf, recProof = st.Checkpoint, st.EpochRecord, st.EpochRecordInclusion
		res.Held = true
	}

	// 1. Checkpoint.
	cp, err := c.openCheckpoint(t, note)
	if err != nil {
		if res.Held {
			return nil, fail(ErrCheckpoint, err, "held checkpoint, lookup of %s", uid)
		}
		return nil, fail(ErrCheckpoint, err, "lookup of %s", uid)
	}
	res.Checkpoint = cp

	// 2. Consistency with the last verified checkpoint (a held checkpoint
	// is the last verified one).
	if st != nil && st.Checkpoint != nil && !res.Held {
		if err := verifyAdvance(t, c, st.Checkpoint, cp, b.Consistency); err != nil {
			return nil, err
		}
	}

	// 3. EpochRecord: last leaf, fresh.
	if cp.Size == 0 {
		return nil, fail(ErrEpochRecord, nil, "checkpoint has an empty tree")
	}
	er, err := klog.ParseEpochRecord(recLeaf)
	if err != nil {
		return nil, fail(ErrEpochRecord, err, "leaf %d", cp.Size-1)
	}
	if err := verifyInclusion(cp, cp.Size-1, recLeaf, recProof); err != nil {
		what := "served"
		if res.Held {
			what = "held"
		}
		return nil, fail(ErrEpochRecord, err, "%s epoch %d record is not leaf %d of the checkpoint", what, er.Epoch, cp.Size-1)
	}
	res.Epoch, res.epochLeaf, res.epochInclusion = *er, recLeaf, recProof
	if err := checkFresh(t, er, now); err != nil {
		return nil, err
	}

	// 4. VRF.
	idx, err := c.verifyIndex(t, uid, b.VRFProof)
	if err != nil {
		return nil, fail(ErrVRF, err, "user %s", uid)
	}
	res.Index = idx

	// 5. Map proof for exactly idx.
	mp, err := vmap.ParseProof(b.MapProof)
	if err != nil {
		return nil, fail(ErrMapProof, err, "user %s", uid)
	}
	// A proof with the value derived (vmap.InclusionDerived) claims
	// presence; its path is checked in 6 with the value the AccountUpdate
	// implies.
	derived := mp.Kind == vmap.InclusionDerived
	var value vmap.Value
	found := derived
	if !derived {
		value, found, err = vmap.Verify(er.MapRoot, idx, mp)
		if err != nil {
			return nil, fail(ErrMapProof, err, "user %s in epoch %d", uid, er.Epoch)
		}
	}

	// 6. Presence and the AccountUpdate.
	if !found {
		if b.AccountUpdate != nil {
			return nil, fail(ErrPresence, nil, "map proves %s absent but an account update is served", uid)
		}
		if c := st.contact(uid); c != nil {
			return nil, fail(ErrAccountMissing, nil, "%s (pinned %s) is proven absent in epoch %d", uid, c.PinnedAt.Format(time.RFC3339), er.Epoch)
		}
		return res, nil
	}
	if b.AccountUpdate == nil {
		if derived {
			return nil, fail(ErrPresence, nil, "map proof for %s omits the value (present account) but no account update is served to derive it from", uid)
		}
		return nil, fail(ErrPresence, nil, "map proves %s present but no account update is served", uid)
	}
	if b.AccountUpdateIndex >= cp.Size-1 {
		return nil, fail(ErrAccountUpdate, nil, "account update index %d is not before the epoch record at %d", b.AccountUpdateIndex, cp.Size-1)
	}
	up, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		return nil, fail(ErrAccountUpdate, err, "leaf %d", b.AccountUpdateIndex)
	}
	if up.Index != idx {
		return nil, fail(ErrIndexMismatch, nil, "leaf %d is for index %x, %s has %x", b.AccountUpdateIndex, up.Index[:8], uid, idx[:8])
	}
	eh := klog.EntryHash(b.AccountUpdate)
	want := vmap.MapValue(up.Version, b.AccountUpdateIndex, eh)
	if derived {
		if err := vmap.VerifyDerived(er.MapRoot, idx, mp, want); err != nil {
			return nil, fail(ErrMapProof, err, "user %s in epoch %d with the value %x of leaf %d (v%d)", uid, er.Epoch, want[:8], b.AccountUpdateIndex, up.Version)
		}
	} else if want != value {
		return nil, fail(ErrMapValue, nil, "map holds %x, leaf %d (v%d) implies %x", value[:8], b.AccountUpdateIndex, up.Version, want[:8])
	}
	res.Found, res.Version, res.LogIndex, res.Leaf, res.EntryHash, res.Update = true, up.Version, b.AccountUpdateIndex, b.AccountUpdate, eh, up

	// 7. Payload.
	if err := verifyPayload(t, res, up, c, memo); err != nil {
		return nil, err
	}

	// 8. Pin.
	return res, checkPin(st, res)
}

// verifyAdvance checks that cp may follow the last verified checkpoint
// oldNote: not smaller, same root at the same size, consistent if larger.
// oldNote is opened with c.openLogCheckpoint (c may be nil).
func verifyAdvance(t *Trust, c *Cache, oldNote []byte, cp *VerifiedCheckpoint, consistency [][]byte) error {
	old, err := c.openLogCheckpoint(t, oldNote)
	if err != nil {
		return fmt.Errorf("%w: last verified checkpoint: %w", ErrState, err)
	}
	switch {
	case cp.Size < old.Size:
		return fail(ErrRollback, nil, "size %d after verified size %d", cp.Size, old.Size)
	case cp.Size == old.Size:
		if cp.Hash != old.Hash {
			return &SplitViewError{Size: cp.Size, Old: oldNote, New: cp.Note, OldRoot: old.Hash, NewRoot: cp.Hash}
		}
		if len(consistency) != 0 {
			return fail(ErrConsistency, nil, "non-empty consistency proof between equal sizes %d", cp.Size)
		}
	case old.Size == 0:
		if len(consistency) != 0 {
			return fail(ErrConsistency, nil, "non-empty consistency proof from size 0")
		}
	default:
		if err := proof.VerifyConsistency(hasher, old.Size, cp.Size, consistency, old.Hash[:], cp.Hash[:]); err != nil {
			return fail(ErrConsistency, err, "from size %d to %d", old.Size, cp.Size)
		}
	}
	return nil
}

func verifyInclusion(cp *VerifiedCheckpoint, index uint64, leaf []byte, p [][]byte) error {
	h := klog.EntryHash(leaf)
	return proof.VerifyInclusion(hasher, index, cp.Size, h[:], p, cp.Hash[:])
}

func checkFresh(t *Trust, er *klog.EpochRecord, now time.Time) error {
	if er.Timestamp > 1<<62 {
		return fail(ErrStale, nil, "epoch %d timestamp %d out of range", er.Epoch, er.Timestamp)
	}
	ts := time.Unix(int64(er.Timestamp), 0)
	maxAge := t.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxCheckpointAge
	}
	if age := now.Sub(ts); age > maxAge {
		return fail(ErrStale, nil, "epoch %d is from %s, %s old (max %s)", er.Epoch, ts.UTC().Format(time.RFC3339), age.Truncate(time.Second), maxAge)
	}
	if ahead := ts.Sub(now); ahead > MaxFutureSkew {
		return fail(ErrStale, nil, "epoch %d is from %s, %s in the future", er.Epoch, ts.UTC().Format(time.RFC3339), ahead.Truncate(time.Second))
	}
	return nil
}

// verifyPayload checks the AccountUpdate's payload and fills res.State,
// res.Reset and res.IdentityKey. An AccountState is checked by the lookup
// rule (devices.VerifyAccountStateForLookup: 2 + n signatures, not the
// DeviceCerts' ASK signatures, which the state's signature by that same
// key covers; docs/protocol.md §7.1); a reset by VerifyResetEntry. The
// signature checks (functions of the payload bytes and the trust's reset
// key and window) are skipped if c holds the payload as verified; it is
// recorded only once every check has passed. With a lookup memo, the
// state is verified through it (the same result), or added to it if c
// held the payload.
func verifyPayload(t *Trust, res *LookupResult, up *klog.AccountUpdate, c *Cache, memo *devices.SignatureMemo) error {
	cached, key := c.payloadVerified(t, byte(up.Update), up.Payload)
	var st *devices.AccountState
	switch up.Update {
	case klog.UpdateCreate, klog.UpdateUpdate:
		s, err := devices.ParseAccountState(up.Payload)
		if err != nil {
			return fail(ErrAccountState, err, "%s v%d", res.UserID, up.Version)
		}
		st = s
	case klog.UpdateReset:
		a, err := devices.ParseResetAuthorization(up.Payload)
		if err != nil {
			return fail(ErrReset, err, "%s v%d", res.UserID, up.Version)
		}
		if !cached {
			if err := devices.VerifyResetEntry(a, t.ResetKey, t.resetWindow()); err != nil {
				if errors.Is(err, devices.ErrResetWindow) {
					return fail(ErrResetWindow, err, "%s v%d", res.UserID, up.Version)
				}
				return fail(ErrReset, err, "%s v%d", res.UserID, up.Version)
			}
		}
		st = a.NewState
		if a.Pending(epochTime(res.Epoch)) {
			if a.UserID != res.UserID || a.Version != up.Version {
				return fail(ErrReset, nil, "looked up %s v%d, the reset is for %s v%d", res.UserID, up.Version, a.UserID, a.Version)
			}
			res.ResetPending = a
			res.State = a.PreviousState()
			res.IdentityKey, res.Generation = a.Current.IdentityKey, a.Current.SigningKey.Generation
			res.Warnings = append(res.Warnings, fmt.Sprintf("RESET PENDING since %s: the directory will replace %s's keys (%s) at %s unless the owner cancels it; until then the keys and safety number are unchanged",
				a.Time.UTC().Format(time.RFC3339), res.UserID, a.Reason, a.EffectiveAt.UTC().Format(time.RFC3339)))
			return nil
		}
		res.Reset = a
	default:
		return fail(ErrAccountUpdate, nil, "unknown update kind %d", up.Update)
	}
	if !cached {
		verify := devices.VerifyAccountStateForLookup
		if memo != nil {
			verify = memo.VerifyAccountState
		}
		if err := verify(st); err != nil {
			if errors.Is(err, devices.ErrRevokedDevice) {
				return fail(ErrRevokedDevice, err, "%s v%d", res.UserID, up.Version)
			}
			return fail(ErrAccountState, err, "%s v%d", res.UserID, up.Version)
		}
	}
	if st.UserID != res.UserID {
		return fail(ErrUserMismatch, nil, "looked up %s, state is for %s", res.UserID, st.UserID)
	}
	if st.Version != up.Version {
		return fail(ErrVersionMismatch, nil, "%s: log entry v%d carries state v%d", res.UserID, up.Version, st.Version)
	}
	if up.Update == klog.UpdateCreate && st.Version != 1 {
		return fail(ErrVersionMismatch, nil, "%s: create with state v%d", res.UserID, st.Version)
	}
	res.State, res.IdentityKey, res.Generation = st, st.IdentityKey, st.Generation()
	if cached && memo != nil {
		memo.AddVerified(st)
	}
	if !cached {
		c.payloadOK(t, key)
	}
	if res.Reset != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("IDENTITY RESET: %s v%d was reset by the directory (%s) at %s; the safety number changed",
			res.UserID, up.Version, res.Reset.Reason, res.Reset.Time.UTC().Format(time.RFC3339)))
	}
	return nil
}

// epochTime is the epoch's timestamp as a time (checkFresh bounds it).
func epochTime(er klog.EpochRecord) time.Time {
	if er.Timestamp > 1<<62 {
		return time.Time{}
	}
	return time.Unix(int64(er.Timestamp), 0).UTC()
}

// checkPin compares res.IdentityKey with st's pin (policy: see PinStatus).
func checkPin(st *ClientState, res *LookupResult) error {
	c := st.contact(res.UserID)
	switch {
	case c == nil:
		res.Pin = PinNew
	case c.IK == res.IdentityKey && res.Generation < c.Generation:
		return fail(ErrStaleSigningKey, nil, "%s v%d is signed by signing key generation %d, but generation %d was already seen: the older key was rotated out (a lost or stolen device)", res.UserID, res.Version, res.Generation, c.Generation)
	case c.IK == res.IdentityKey && c.Verified:
		res.Pin, res.PinnedIK = PinMatchVerified, c.IK
	case c.IK == res.IdentityKey:
		res.Pin, res.PinnedIK = PinMatch, c.IK
	case c.Verified:
		return &SafetyNumberChangedError{UserID: res.UserID, Old: c.IK, New: res.IdentityKey, Reset: res.Reset != nil, Result: res}
	default:
		res.Pin, res.PinnedIK = PinChanged, c.IK
		res.Warnings = append(res.Warnings, fmt.Sprintf("SAFETY NUMBER CHANGED for %s (key was not verified): %x... is now %x...", res.UserID, c.IK[:8], res.IdentityKey[:8]))
	}
	return nil
}
