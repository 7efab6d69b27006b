package devices

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

const resetFormat = 0x01

// ResetReason says why the directory reset an account's identity key.
type ResetReason uint8

// Reset reasons. Decoders reject any other value.
const (
	ResetLostAllKeys ResetReason = 1 // paper key and every device lost
	ResetCompromised ResetReason = 2 // identity key known or suspected compromised
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

// ResetAuthorization is the directory's signed permission to replace an
// account's identity key when the paper key and all devices are lost. It
// is published in the log as a reset entry, so contacts see the safety
// number change and auditors count it.
type ResetAuthorization struct {
	UserID    string        // canonical user id
	Version   uint64        // NewState.Version, previous version + 1
	PrevHash  [32]byte      // Hash of the previous AccountState
	NewState  *AccountState // signed by the new identity key
	Reason    ResetReason
	Time      time.Time // whole seconds, UTC
	Signature [64]byte  // reset key over "keyline reset v1" || 0x00 || body
}

func (a *ResetAuthorization) body() ([]byte, error) {
	if err := checkUserID(a.UserID); err != nil {
		return nil, err
	}
	if a.NewState == nil {
		return nil, fmt.Errorf("devices: %w: reset authorization has no new state", ErrMalformed)
	}
	st, err := a.NewState.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if !a.Reason.valid() {
		return nil, fmt.Errorf("devices: %w: unknown reset reason %d", ErrMalformed, a.Reason)
	}
	if err := checkTime("reset time", a.Time); err != nil {
		return nil, err
	}
	var w builder
	w.u8(resetFormat)
	w.string16(a.UserID)
	w.u64(a.Version)
	w.raw(a.PrevHash[:])
	w.raw(st)
	w.u8(uint8(a.Reason))
	w.time(a.Time)
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
// the format only; use VerifyReset.
func ParseResetAuthorization(b []byte) (*ResetAuthorization, error) {
	r := &reader{what: "ResetAuthorization", b: b}
	a := new(ResetAuthorization)
	r.format(resetFormat)
	a.UserID = r.string16("user id", MaxUserIDLen)
	a.Version = r.u64("version")
	a.PrevHash = r.array32("previous hash")
	if r.err == nil {
		r.what = "ResetAuthorization new AccountState"
		a.NewState = readAccountState(r)
		r.what = "ResetAuthorization"
	}
	a.Reason = ResetReason(r.u8("reason"))
	a.Time = r.time("time")
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

// NewResetState returns the AccountState, version prev.Version+1 signed by
// the new identity key newIK, that a reset installs: one device (the
// back-signed cert first, issued by newIK), every revocation of prev kept
// and every device of prev revoked with ReasonLost.
func NewResetState(prev *AccountState, newIK *IdentityKey, first *DeviceCert, now time.Time) (*AccountState, error) {
	next, err := successor(prev, now)
	if err != nil {
		return nil, err
	}
	next.IdentityKey = newIK.Public()
	for _, d := range prev.Devices {
		if err := next.revoke(d.ID, ReasonLost); err != nil {
			return nil, err
		}
	}
	c := *first
	if err := newIK.IssueCert(&c); err != nil {
		return nil, err
	}
	if err := next.addDevice(&c); err != nil {
		return nil, err
	}
	if err := next.Sign(newIK); err != nil {
		return nil, err
	}
	return next, nil
}

// SignReset returns the reset authorization, signed with the directory's
// reset key, that replaces prev by newState (see NewResetState). It checks
// the result with VerifyReset.
func SignReset(resetKey ed25519.PrivateKey, prev, newState *AccountState, reason ResetReason, now time.Time) (*ResetAuthorization, error) {
	if len(resetKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("devices: %w: reset private key is %d bytes", ErrReset, len(resetKey))
	}
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	a := &ResetAuthorization{
		UserID:   prev.UserID,
		Version:  newState.Version,
		PrevHash: h,
		NewState: newState,
		Reason:   reason,
		Time:     now.Truncate(time.Second).UTC(),
	}
	b, err := a.body()
	if err != nil {
		return nil, err
	}
	copy(a.Signature[:], ed25519.Sign(resetKey, signedMessage(ctxReset, b)))
	pub, _ := resetKey.Public().(ed25519.PublicKey)
	if err := VerifyReset(prev, a, pub); err != nil {
		return nil, err
	}
	return a, nil
}

// VerifyResetSignature checks only the directory reset key's signature on
// a: Ed25519 by resetKeyPub over "keyline reset v1" || 0x00 || body, body
// being a's encoding without the final 64-byte signature (the body must
// encode: valid user id, new state present, known reason, valid time).
// It does not check a's new state or its link to the previous state; a
// client that has only the reset entry (a lookup) uses it, VerifyReset
// checks it together with everything else.
func VerifyResetSignature(a *ResetAuthorization, resetKeyPub ed25519.PublicKey) error {
	if a == nil {
		return fmt.Errorf("devices: %w: nil reset authorization", ErrMalformed)
	}
	if len(resetKeyPub) != ed25519.PublicKeySize {
		return fmt.Errorf("devices: %w: reset public key is %d bytes", ErrReset, len(resetKeyPub))
	}
	b, err := a.body()
	if err != nil {
		return err
	}
	if !ed25519.Verify(resetKeyPub, signedMessage(ctxReset, b), a.Signature[:]) {
		return fmt.Errorf("devices: %w: %s v%d: signature by the directory reset key does not verify", ErrReset, a.UserID, a.Version)
	}
	return nil
}

// VerifyReset checks that reset validly replaces prev:
//
//   - signed by the directory reset key resetKeyPub;
//   - its user id, version and previous hash equal those of its NewState,
//     and NewState links to prev (same user id, version prev.Version+1,
//     PrevHash == prev.Hash(), timestamp not before prev's);
//   - NewState has a new identity key and is self-consistent under it
//     (VerifyAccountState);
//   - prev's revocations are kept, every device of prev is revoked, and no
//     revoked device is listed;
//   - the reset time is not before prev's timestamp.
func VerifyReset(prev *AccountState, reset *ResetAuthorization, resetKeyPub ed25519.PublicKey) error {
	if reset == nil || prev == nil {
		return fmt.Errorf("devices: %w: nil reset or previous state", ErrMalformed)
	}
	if err := VerifyResetSignature(reset, resetKeyPub); err != nil {
		return err
	}
	next := reset.NewState
	if reset.UserID != next.UserID {
		return fmt.Errorf("devices: %w: reset is for %q, its new state for %q", ErrUserMismatch, reset.UserID, next.UserID)
	}
	if reset.Version != next.Version {
		return fmt.Errorf("devices: %w: reset names version %d, its new state is v%d", ErrVersion, reset.Version, next.Version)
	}
	if reset.PrevHash != next.PrevHash {
		return fmt.Errorf("devices: %w: reset and its new state name different previous hashes", ErrPrevHash)
	}
	if err := checkLink(prev, next); err != nil {
		return err
	}
	if reset.Time.Before(prev.Timestamp) {
		return fmt.Errorf("devices: %w: reset time %v is before v%d's %v", ErrTimestamp, reset.Time, prev.Version, prev.Timestamp)
	}
	if next.IdentityKey == prev.IdentityKey {
		return fmt.Errorf("devices: %w: reset keeps the identity key (use a normal update)", ErrReset)
	}
	if err := VerifyAccountState(next); err != nil {
		return err
	}
	if err := checkRevocations(prev, next); err != nil {
		return err
	}
	for _, d := range prev.Devices {
		if next.Revoked(d.ID) == nil {
			return fmt.Errorf("devices: %w: device %s of v%d is not revoked by the reset", ErrReset, d.ID, prev.Version)
		}
	}
	return nil
}
