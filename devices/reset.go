package devices

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"
)

const resetFormat = 0x02

// DefaultResetWindow is the default time between a reset being logged
// (pending) and taking effect, during which the owner can cancel it.
// trust.json names the window clients require (reset_window_seconds).
const DefaultResetWindow = 72 * time.Hour

// CancelLogSlack is how many seconds after a reset's EffectiveAt the epoch
// holding its cancellation may be timestamped: a directory accepts a
// cancellation until EffectiveAt and cuts the epoch holding it shortly
// after; auditors report a later one (docs/protocol.md, rule
// reset-log-time).
const CancelLogSlack = 60

// ResetReason says why the directory reset an account's root key.
type ResetReason uint8

// Reset reasons. Decoders reject any other value.
const (
	ResetLostAllKeys ResetReason = 1 // paper key and every device lost
	ResetCompromised ResetReason = 2 // root key known or suspected compromised
)

func (r ResetReason) valid() bool { return r == ResetLostAllKeys || r == ResetCompromised }

func (r ResetReason) String() string {
	switch r {
	case ResetLostAllKeys:
		return "lost-all-keys"
	case ResetCompromised:
		return "compromised"
	}
	return fmt.Sprintf("ResetReason(%d)", uint8(r))
}

// AccountKeys are the keys of an AccountState that lookups need: root
// key, signing key cert and device certs. A ResetAuthorization carries
// the keys of the state it replaces, so lookups during the reset's window
// can keep returning them.
type AccountKeys struct {
	IdentityKey [32]byte // root key (RK) public key
	SigningKey  *SigningKeyCert
	Devices     []*DeviceCert // as in the AccountState
}

// KeysOf returns the AccountKeys of s (sharing its certs).
func KeysOf(s *AccountState) *AccountKeys {
	return &AccountKeys{IdentityKey: s.IdentityKey, SigningKey: s.SigningKey, Devices: slices.Clone(s.Devices)}
}

// ResetAuthorization is the directory's signed permission to replace an
// account's root key when the paper key and all devices are lost. It is
// published in the log as a reset entry, first *pending*: until
// EffectiveAt, lookups return the previous keys (Current) with a "reset
// pending" notice and the owner can cancel it by publishing any valid
// update signed with the previous keys (VerifyAfterReset). From
// EffectiveAt on, NewState is the account's state, contacts see the
// safety number change, and auditors count it.
type ResetAuthorization struct {
	UserID      string        // canonical user id
	Version     uint64        // NewState.Version, previous version + 1
	PrevHash    [32]byte      // Hash of the previous AccountState
	Current     *AccountKeys  // the previous state's keys, in effect until EffectiveAt
	NewState    *AccountState // signed by a new root key's generation-1 ASK
	Reason      ResetReason
	Time        time.Time // when the reset was logged (pending since); whole seconds, UTC
	EffectiveAt time.Time // end of the window, >= Time + the trust.json window
	Signature   [64]byte  // reset key over "keyline reset v2" || 0x00 || body
}

// Pending reports whether the reset has not taken effect at t.
func (a *ResetAuthorization) Pending(t time.Time) bool { return t.Before(a.EffectiveAt) }

func (k *AccountKeys) check() error {
	if k == nil {
		return fmt.Errorf("%w: reset authorization has no current keys", ErrMalformed)
	}
	if k.SigningKey == nil {
		return fmt.Errorf("%w: reset authorization's current keys have no signing key cert", ErrMalformed)
	}
	if err := k.SigningKey.checkFields(); err != nil {
		return err
	}
	if len(k.Devices) == 0 || len(k.Devices) > MaxDevices {
		return fmt.Errorf("%w: reset authorization's current keys have %d devices, want 1..%d", ErrMalformed, len(k.Devices), MaxDevices)
	}
	for i, c := range k.Devices {
		if c == nil {
			return fmt.Errorf("%w: device %d is nil", ErrMalformed, i)
		}
		if err := c.checkFields(); err != nil {
			return err
		}
		if i > 0 {
			if err := checkOrder("device", k.Devices[i-1].ID, c.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *AccountKeys) appendTo(w *builder) {
	w.raw(k.IdentityKey[:])
	k.SigningKey.appendBody(w)
	w.raw(k.SigningKey.Signature[:])
	w.u16(uint16(len(k.Devices)))
	for _, c := range k.Devices {
		c.appendTo(w)
	}
}

func readAccountKeys(r *reader) *AccountKeys {
	k := new(AccountKeys)
	k.IdentityKey = r.array32("current root key")
	if r.err == nil {
		k.SigningKey = readSigningKeyCert(r)
	}
	n := int(r.u16("current device count"))
	if r.err == nil && (n == 0 || n > MaxDevices) {
		r.fail("current device count %d outside 1..%d", n, MaxDevices)
	}
	for i := 0; i < n && r.err == nil; i++ {
		if c := readDeviceCert(r); c != nil {
			k.Devices = append(k.Devices, c)
		}
	}
	if r.err == nil {
		if err := k.check(); err != nil {
			r.failErr(err)
		}
	}
	if r.err != nil {
		return nil
	}
	return k
}

// equalKeys reports whether k holds exactly s's keys.
func (k *AccountKeys) equalState(s *AccountState) bool {
	if k.IdentityKey != s.IdentityKey || !k.SigningKey.equal(s.SigningKey) || len(k.Devices) != len(s.Devices) {
		return false
	}
	for i := range k.Devices {
		if !sameCert(k.Devices[i], s.Devices[i]) {
			return false
		}
	}
	return true
}

// State returns the keys as an unsigned AccountState of version, for
// display during a pending reset (Signature is zero: it is not a state
// the owner signed).
func (k *AccountKeys) State(userID string, version uint64, ts time.Time) *AccountState {
	return &AccountState{UserID: userID, Version: version, IdentityKey: k.IdentityKey, SigningKey: k.SigningKey, Devices: slices.Clone(k.Devices), Timestamp: ts}
}

// PreviousState returns the state the reset replaces as far as the reset
// entry shows it: version Version-1 with Current's keys, the revocations
// of NewState other than the ones the reset added (VerifyReset requires
// them to be the previous state's), and timestamp Time (not before the
// previous state's). It is unsigned: for display, and as the base of a
// cancellation (LinkAfterReset).
func (a *ResetAuthorization) PreviousState() *AccountState {
	s := a.Current.State(a.UserID, a.Version-1, a.Time)
	for _, rv := range a.NewState.Revocations {
		if !slices.ContainsFunc(a.Current.Devices, func(c *DeviceCert) bool { return c.ID == rv.Device }) {
			s.Revocations = append(s.Revocations, rv)
		}
	}
	return s
}

// LinkAfterReset turns next, a state built on a.PreviousState() with the
// previous keys (AddDevice, RevokeDevices, Rotate, Resign), into the
// version that follows the reset entry and so cancels it: version
// a.Version+1, PrevHash the reset's new state's hash, re-signed by ask.
// It checks the result with VerifyAfterReset.
func LinkAfterReset(next *AccountState, a *ResetAuthorization, ask *AccountSigningKey) (*AccountState, error) {
	h, err := a.NewState.Hash()
	if err != nil {
		return nil, err
	}
	out := *next
	out.Version, out.PrevHash = a.Version+1, h
	if out.Timestamp.Before(a.NewState.Timestamp) {
		out.Timestamp = a.NewState.Timestamp
	}
	if err := out.Sign(ask); err != nil {
		return nil, err
	}
	if _, err := VerifyAfterReset(nil, a, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (a *ResetAuthorization) body() ([]byte, error) {
	if err := checkUserID(a.UserID); err != nil {
		return nil, err
	}
	if a.NewState == nil {
		return nil, fmt.Errorf("%w: reset authorization has no new state", ErrMalformed)
	}
	if err := a.Current.check(); err != nil {
		return nil, err
	}
	st, err := a.NewState.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if !a.Reason.valid() {
		return nil, fmt.Errorf("%w: unknown reset reason %d", ErrMalformed, a.Reason)
	}
	if err := checkTime("reset time", a.Time); err != nil {
		return nil, err
	}
	if err := checkTime("reset effective time", a.EffectiveAt); err != nil {
		return nil, err
	}
	var w builder
	w.u8(resetFormat)
	w.string16(a.UserID)
	w.u64(a.Version)
	w.raw(a.PrevHash[:])
	a.Current.appendTo(&w)
	w.raw(st)
	w.u8(uint8(a.Reason))
	w.time(a.Time)
	w.time(a.EffectiveAt)
	return w.b, nil
}

// MarshalBinary returns the canonical encoding: body || signature.
func (a *ResetAuthorization) MarshalBinary() ([]byte, error) {
	b, err := a.body()
	if err != nil {
		return nil, err
	}
	return append(b, a.Signature[:]...), nil
}

// ParseResetAuthorization decodes a ResetAuthorization encoding. It checks
// the format only; use VerifyReset or VerifyResetEntry.
func ParseResetAuthorization(b []byte) (*ResetAuthorization, error) {
	r := &reader{what: "ResetAuthorization", b: b}
	a := new(ResetAuthorization)
	r.format(resetFormat)
	a.UserID = r.string16("user id", MaxUserIDLen)
	a.Version = r.u64("version")
	a.PrevHash = r.array32("previous hash")
	if r.err == nil {
		a.Current = readAccountKeys(r)
	}
	if r.err == nil {
		r.what = "ResetAuthorization new AccountState"
		a.NewState = readAccountState(r)
		r.what = "ResetAuthorization"
	}
	a.Reason = ResetReason(r.u8("reason"))
	a.Time = r.time("time")
	a.EffectiveAt = r.time("effective time")
	a.Signature = r.array64("signature")
	if r.err == nil {
		if err := checkUserID(a.UserID); err != nil {
			r.failErr(err)
		} else if !a.Reason.valid() {
			r.fail("unknown reset reason %d", a.Reason)
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return a, nil
}

// NewResetState returns the AccountState, version prev.Version+1, that a
// reset installs: the new root key newRK's generation-1 signing key ask
// (NewAccountSigningKey with newRK) signs it; one device (the back-signed
// cert first, for newRK); every revocation of prev kept and every device
// of prev revoked with ReasonLost.
func NewResetState(prev *AccountState, newRK [32]byte, ask *AccountSigningKey, first *DeviceCert, now time.Time) (*AccountState, error) {
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	ts := now.Truncate(time.Second).UTC()
	if ts.Before(prev.Timestamp) {
		ts = prev.Timestamp
	}
	next := &AccountState{
		UserID:      prev.UserID,
		Version:     prev.Version + 1,
		PrevHash:    h,
		IdentityKey: newRK,
		SigningKey:  ask.Cert,
		Devices:     slices.Clone(prev.Devices),
		Revocations: slices.Clone(prev.Revocations),
		Timestamp:   ts,
	}
	for _, d := range prev.Devices {
		if err := next.revoke(d.ID, ReasonLost); err != nil {
			return nil, err
		}
	}
	c := *first
	if err := ask.IssueCert(newRK, &c); err != nil {
		return nil, err
	}
	if err := next.addDevice(&c); err != nil {
		return nil, err
	}
	next.Trusted = []DeviceID{c.ID}
	if err := next.Sign(ask); err != nil {
		return nil, err
	}
	return next, nil
}

// SignReset returns the reset authorization, signed with the directory's
// reset key, that replaces prev by newState (see NewResetState) once
// window has passed after now. It checks the result with VerifyReset.
func SignReset(resetKey ed25519.PrivateKey, prev, newState *AccountState, reason ResetReason, now time.Time, window time.Duration) (*ResetAuthorization, error) {
	if len(resetKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: reset private key is %d bytes", ErrReset, len(resetKey))
	}
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	t := now.Truncate(time.Second).UTC()
	a := &ResetAuthorization{
		UserID:      prev.UserID,
		Version:     newState.Version,
		PrevHash:    h,
		Current:     KeysOf(prev),
		NewState:    newState,
		Reason:      reason,
		Time:        t,
		EffectiveAt: t.Add(window.Round(time.Second)),
	}
	b, err := a.body()
	if err != nil {
		return nil, err
	}
	copy(a.Signature[:], ed25519.Sign(resetKey, signedMessage(ctxReset, b)))
	pub, _ := resetKey.Public().(ed25519.PublicKey)
	if err := VerifyReset(prev, a, pub, window); err != nil {
		return nil, err
	}
	return a, nil
}

// VerifyResetSignature checks only the directory reset key's signature on
// a: Ed25519 by resetKeyPub over "keyline reset v2" || 0x00 || body, body
// being a's encoding without the final 64-byte signature (the body must
// encode). It does not check a's states or keys.
func VerifyResetSignature(a *ResetAuthorization, resetKeyPub ed25519.PublicKey) error {
	if a == nil {
		return fmt.Errorf("%w: nil reset authorization", ErrMalformed)
	}
	if len(resetKeyPub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: reset public key is %d bytes", ErrReset, len(resetKeyPub))
	}
	b, err := a.body()
	if err != nil {
		return err
	}
	if !verifySignature(nil, resetKeyPub, signedMessage(ctxReset, b), a.Signature[:]) {
		return fmt.Errorf("%w: %s v%d: signature by the directory reset key does not verify", ErrReset, a.UserID, a.Version)
	}
	return nil
}

// VerifyResetEntry checks everything about a that does not need the
// previous state (a lookup has only the reset entry):
//
//   - signed by the directory reset key resetKeyPub (VerifyResetSignature);
//   - its user id, version and previous hash equal those of its NewState;
//   - the window: EffectiveAt >= Time + minWindow (ErrResetWindow), and
//     Time not before the current SigningKeyCert's creation (ErrTimestamp:
//     a reset cannot be backdated past the last rotation);
//   - Current verifies: its SigningKeyCert under its root key for the user
//     and every device cert under both;
//   - NewState has a new root key and is self-consistent under it
//     (VerifyAccountState) with signing key generation 1, and revokes every
//     device of Current.
func VerifyResetEntry(a *ResetAuthorization, resetKeyPub ed25519.PublicKey, minWindow time.Duration) error {
	if err := VerifyResetSignature(a, resetKeyPub); err != nil {
		return err
	}
	next := a.NewState
	if a.UserID != next.UserID {
		return fmt.Errorf("%w: reset is for %q, its new state for %q", ErrUserMismatch, a.UserID, next.UserID)
	}
	if a.Version != next.Version {
		return fmt.Errorf("%w: reset names version %d, its new state is v%d", ErrVersion, a.Version, next.Version)
	}
	if a.PrevHash != next.PrevHash {
		return fmt.Errorf("%w: reset and its new state name different previous hashes", ErrPrevHash)
	}
	if a.EffectiveAt.Before(a.Time.Add(minWindow)) {
		return fmt.Errorf("%w: %s v%d: reset logged at %v takes effect at %v, before the %v window ends", ErrResetWindow, a.UserID, a.Version, a.Time, a.EffectiveAt, minWindow)
	}
	cur := a.Current
	if err := VerifySigningKeyCert(cur.IdentityKey, a.UserID, cur.SigningKey); err != nil {
		return err
	}
	if a.Time.Before(cur.SigningKey.Created) {
		return fmt.Errorf("%w: %s v%d: reset logged at %v, before the current signing key was certified (%v): a backdated reset", ErrTimestamp, a.UserID, a.Version, a.Time, cur.SigningKey.Created)
	}
	for _, c := range cur.Devices {
		if err := VerifyDeviceCert(cur.IdentityKey, cur.SigningKey.Key, c); err != nil {
			return err
		}
	}
	if next.IdentityKey == cur.IdentityKey {
		return fmt.Errorf("%w: reset keeps the root key (use a normal update)", ErrReset)
	}
	if g := next.Generation(); g != 1 {
		return fmt.Errorf("%w: reset state has signing key generation %d, want 1", ErrSigningKeyCert, g)
	}
	if err := VerifyAccountState(next); err != nil {
		return err
	}
	for _, d := range cur.Devices {
		if next.Revoked(d.ID) == nil {
			return fmt.Errorf("%w: device %s is not revoked by the reset", ErrReset, d.ID)
		}
	}
	return nil
}

// VerifyReset checks that reset validly replaces prev: VerifyResetEntry
// with the window minWindow, reset.Current equal to prev's keys, NewState
// linked to prev (same user id, version prev.Version+1, PrevHash ==
// prev.Hash(), timestamp not before prev's), prev's revocations kept, the
// reset time not before prev's timestamp.
func VerifyReset(prev *AccountState, reset *ResetAuthorization, resetKeyPub ed25519.PublicKey, minWindow time.Duration) error {
	if reset == nil || prev == nil {
		return fmt.Errorf("%w: nil reset or previous state", ErrMalformed)
	}
	if err := VerifyResetEntry(reset, resetKeyPub, minWindow); err != nil {
		return err
	}
	if !reset.Current.equalState(prev) {
		return fmt.Errorf("%w: %s v%d: the reset's current keys are not those of v%d", ErrReset, reset.UserID, reset.Version, prev.Version)
	}
	next := reset.NewState
	if err := checkLink(prev, next); err != nil {
		return err
	}
	if reset.Time.Before(prev.Timestamp) {
		return fmt.Errorf("%w: reset time %v is before v%d's %v", ErrTimestamp, reset.Time, prev.Version, prev.Timestamp)
	}
	return checkRevocations(prev, next)
}

// VerifyAfterReset checks next, the version that follows the reset entry
// reset (itself accepted by VerifyReset against prev, the state it
// replaces). There are exactly two valid successors:
//
//   - a cancellation: a valid update of prev (VerifyTransition rules with
//     prev as previous state, so signed by prev's current signing key or a
//     new generation certified by prev's root key; ErrStaleSigningKey for
//     an older one) whose version and PrevHash follow the reset's new state
//     (version reset.Version+1, PrevHash == reset.NewState.Hash()) and
//     whose timestamp is before reset.EffectiveAt (ErrResetWindow). The
//     reset never takes effect; the account continues from next.
//   - an update of the reset's new state (VerifyTransition from
//     reset.NewState) with a timestamp not before reset.EffectiveAt
//     (ErrResetPending otherwise).
//
// It reports whether next cancels the reset. Callers that know when next
// was logged also check that time against EffectiveAt (the directory its
// clock, the auditor the epoch timestamp).
//
// prev may be nil when the verifier's history starts at the reset entry;
// then prev is reset.PreviousState().
func VerifyAfterReset(prev *AccountState, reset *ResetAuthorization, next *AccountState) (cancelled bool, err error) {
	if reset == nil || next == nil || reset.Current == nil || reset.NewState == nil {
		return false, fmt.Errorf("%w: nil state or reset", ErrMalformed)
	}
	if prev == nil {
		prev = reset.PreviousState()
	}
	switch next.IdentityKey {
	case prev.IdentityKey:
		if next.UserID != prev.UserID {
			return false, fmt.Errorf("%w: next state is for %q, previous for %q", ErrUserMismatch, next.UserID, prev.UserID)
		}
		if err := checkGeneration(prev, next); err != nil {
			return false, err
		}
		if err := checkLink(reset.NewState, next); err != nil {
			return false, err
		}
		if !next.Timestamp.Before(reset.EffectiveAt) {
			return false, fmt.Errorf("%w: %s v%d cancels the reset at %v, after its window ended at %v", ErrResetWindow, next.UserID, next.Version, next.Timestamp, reset.EffectiveAt)
		}
		if next.Timestamp.Before(prev.Timestamp) {
			return false, fmt.Errorf("%w: %s v%d timestamp %v is before v%d's %v", ErrTimestamp, next.UserID, next.Version, next.Timestamp, prev.Version, prev.Timestamp)
		}
		if err := VerifyAccountState(next); err != nil {
			return false, err
		}
		return true, checkRevocations(prev, next)
	case reset.NewState.IdentityKey:
		if next.Timestamp.Before(reset.EffectiveAt) {
			return false, fmt.Errorf("%w: %s v%d uses the reset's new keys at %v, before the reset takes effect at %v", ErrResetPending, next.UserID, next.Version, next.Timestamp, reset.EffectiveAt)
		}
		return false, VerifyTransition(reset.NewState, next)
	}
	return false, fmt.Errorf("%w: %s v%d after a reset has root key %x, neither the previous nor the reset's", ErrIdentityChanged, next.UserID, next.Version, next.IdentityKey[:8])
}
