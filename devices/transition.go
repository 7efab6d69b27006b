package devices

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"
)

// VerifyCreate checks a first AccountState: version 1, zero PrevHash, no
// revocations, and self-consistent (VerifyAccountState).
func VerifyCreate(next *AccountState) error {
	if next == nil {
		return fmt.Errorf("devices: %w: nil AccountState", ErrMalformed)
	}
	if next.Version != 1 {
		return fmt.Errorf("devices: %w: create has version %d, want 1", ErrVersion, next.Version)
	}
	if next.PrevHash != ([32]byte{}) {
		return fmt.Errorf("devices: %w: create has non-zero previous hash", ErrPrevHash)
	}
	if len(next.Revocations) != 0 {
		return fmt.Errorf("devices: %w: create revokes %d devices of no previous state", ErrRevocation, len(next.Revocations))
	}
	return VerifyAccountState(next)
}

// VerifyTransition checks that next is a valid normal update of prev:
//
//   - next is self-consistent (VerifyAccountState): signed by its IK, every
//     DeviceCert doubly signed, no listed device revoked;
//   - same user id, version prev.Version+1, PrevHash == prev.Hash();
//   - same identity key, so next is signed by prev's IK (ErrIdentityChanged
//     otherwise; only VerifyReset allows a new IK);
//   - every revocation of prev is kept unchanged, and every new revocation
//     names a device listed in prev;
//   - no device revoked in prev or next is listed in next;
//   - timestamp not before prev's; new revocation times within
//     [prev.Timestamp, next.Timestamp].
//
// prev is trusted to have been verified already.
func VerifyTransition(prev, next *AccountState) error {
	if err := checkLink(prev, next); err != nil {
		return err
	}
	if next.IdentityKey != prev.IdentityKey {
		return fmt.Errorf("devices: %w: %s v%d has identity key %x, v%d had %x", ErrIdentityChanged, next.UserID, next.Version, next.IdentityKey[:8], prev.Version, prev.IdentityKey[:8])
	}
	if err := VerifyAccountState(next); err != nil {
		return err
	}
	return checkRevocations(prev, next)
}

// checkLink checks user id, version, previous hash and timestamp.
func checkLink(prev, next *AccountState) error {
	if prev == nil || next == nil {
		return fmt.Errorf("devices: %w: nil AccountState", ErrMalformed)
	}
	if next.UserID != prev.UserID {
		return fmt.Errorf("devices: %w: next state is for %q, previous for %q", ErrUserMismatch, next.UserID, prev.UserID)
	}
	if prev.Version == ^uint64(0) || next.Version != prev.Version+1 {
		return fmt.Errorf("devices: %w: %s v%d follows v%d, want v%d", ErrVersion, next.UserID, next.Version, prev.Version, prev.Version+1)
	}
	h, err := prev.Hash()
	if err != nil {
		return err
	}
	if next.PrevHash != h {
		return fmt.Errorf("devices: %w: %s v%d names previous hash %x, v%d hashes to %x", ErrPrevHash, next.UserID, next.Version, next.PrevHash[:8], prev.Version, h[:8])
	}
	if next.Timestamp.Before(prev.Timestamp) {
		return fmt.Errorf("devices: %w: %s v%d timestamp %v is before v%d's %v", ErrTimestamp, next.UserID, next.Version, next.Timestamp, prev.Version, prev.Timestamp)
	}
	return nil
}

// checkRevocations checks the revocation rules between prev and next.
func checkRevocations(prev, next *AccountState) error {
	for _, c := range next.Devices {
		if rv := prev.Revoked(c.ID); rv != nil {
			return fmt.Errorf("devices: %w: device %s (%q) was revoked (%s) and is listed again", ErrRevokedDevice, c.ID, c.Name, rv.Reason)
		}
	}
	for _, old := range prev.Revocations {
		rv := next.Revoked(old.Device)
		if rv == nil {
			return fmt.Errorf("devices: %w: revocation of device %s was dropped", ErrRevocation, old.Device)
		}
		if rv.Reason != old.Reason || !rv.Time.Equal(old.Time) {
			return fmt.Errorf("devices: %w: revocation of device %s was altered", ErrRevocation, old.Device)
		}
	}
	for _, rv := range next.Revocations {
		if prev.Revoked(rv.Device) != nil {
			continue
		}
		if prev.Device(rv.Device) == nil {
			return fmt.Errorf("devices: %w: new revocation names device %s, which is not in v%d", ErrRevocation, rv.Device, prev.Version)
		}
		if rv.Time.Before(prev.Timestamp) || rv.Time.After(next.Timestamp) {
			return fmt.Errorf("devices: %w: revocation of device %s at %v is outside [%v, %v]", ErrTimestamp, rv.Device, rv.Time, prev.Timestamp, next.Timestamp)
		}
	}
	return nil
}

// NewAccount returns the signed version-1 AccountState for userID with one
// device, whose back-signed cert first is issued by ik.
func NewAccount(ik *IdentityKey, userID string, first *DeviceCert, now time.Time) (*AccountState, error) {
	c := *first
	if err := ik.IssueCert(&c); err != nil {
		return nil, err
	}
	s := &AccountState{
		UserID:      userID,
		Version:     1,
		IdentityKey: ik.Public(),
		Devices:     []*DeviceCert{&c},
		Timestamp:   now.Truncate(time.Second).UTC(),
	}
	if err := s.Sign(ik); err != nil {
		return nil, err
	}
	if err := VerifyCreate(s); err != nil {
		return nil, err
	}
	return s, nil
}

// successor returns an unsigned copy of prev as version prev.Version+1.
func successor(prev *AccountState, now time.Time) (*AccountState, error) {
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	ts := now.Truncate(time.Second).UTC()
	if ts.Before(prev.Timestamp) {
		ts = prev.Timestamp // never let a slow clock break the timestamp rule
	}
	return &AccountState{
		UserID:      prev.UserID,
		Version:     prev.Version + 1,
		PrevHash:    h,
		IdentityKey: prev.IdentityKey,
		Devices:     slices.Clone(prev.Devices),
		Revocations: slices.Clone(prev.Revocations),
		Timestamp:   ts,
	}, nil
}

func (s *AccountState) addDevice(c *DeviceCert) error {
	if s.Device(c.ID) != nil {
		return fmt.Errorf("devices: %w: device %s is already in the account", ErrDuplicateDevice, c.ID)
	}
	if rv := s.Revoked(c.ID); rv != nil {
		return fmt.Errorf("devices: %w: device %s was revoked (%s) and cannot be added again", ErrRevokedDevice, c.ID, rv.Reason)
	}
	i, _ := slices.BinarySearchFunc(s.Devices, c.ID, func(e *DeviceCert, id DeviceID) int { return bytes.Compare(e.ID[:], id[:]) })
	s.Devices = slices.Insert(s.Devices, i, c)
	return nil
}

func (s *AccountState) revoke(id DeviceID, reason RevocationReason) error {
	i := slices.IndexFunc(s.Devices, func(c *DeviceCert) bool { return c.ID == id })
	if i < 0 {
		return fmt.Errorf("devices: %w: device %s is not in the account", ErrRevocation, id)
	}
	s.Devices = slices.Delete(s.Devices, i, i+1)
	rv := Revocation{Device: id, Time: s.Timestamp, Reason: reason}
	j, _ := slices.BinarySearchFunc(s.Revocations, id, func(e Revocation, id DeviceID) int { return bytes.Compare(e.Device[:], id[:]) })
	s.Revocations = slices.Insert(s.Revocations, j, rv)
	return nil
}

func finish(prev, next *AccountState, ik *IdentityKey) (*AccountState, error) {
	if err := next.Sign(ik); err != nil {
		return nil, err
	}
	if err := VerifyTransition(prev, next); err != nil {
		return nil, err
	}
	return next, nil
}

// AddDevice returns the signed state prev.Version+1 adding the back-signed
// cert c (which ik issues). ik must be prev's identity key.
func AddDevice(prev *AccountState, ik *IdentityKey, c *DeviceCert, now time.Time) (*AccountState, error) {
	next, err := successor(prev, now)
	if err != nil {
		return nil, err
	}
	cc := *c
	if err := ik.IssueCert(&cc); err != nil {
		return nil, err
	}
	if err := next.addDevice(&cc); err != nil {
		return nil, err
	}
	return finish(prev, next, ik)
}

// RevokeDevices returns the signed state prev.Version+1 without the devices
// ids, each recorded as revoked at the new timestamp for reason. At least
// one device must remain.
func RevokeDevices(prev *AccountState, ik *IdentityKey, ids []DeviceID, reason RevocationReason, now time.Time) (*AccountState, error) {
	next, err := successor(prev, now)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := next.revoke(id, reason); err != nil {
			return nil, err
		}
	}
	return finish(prev, next, ik)
}

// Recover is the paper-key recovery transition: the identity key ik
// (re-derived from the paper key) adds the new device's back-signed cert c
// and revokes every other device of prev with ReasonLost. The identity key,
// and so the safety number, is unchanged.
func Recover(prev *AccountState, ik *IdentityKey, c *DeviceCert, now time.Time) (*AccountState, error) {
	next, err := successor(prev, now)
	if err != nil {
		return nil, err
	}
	for _, d := range prev.Devices {
		if d.ID == c.ID {
			continue
		}
		if err := next.revoke(d.ID, ReasonLost); err != nil {
			return nil, err
		}
	}
	if next.Device(c.ID) == nil {
		cc := *c
		if err := ik.IssueCert(&cc); err != nil {
			return nil, err
		}
		if err := next.addDevice(&cc); err != nil {
			return nil, err
		}
	}
	return finish(prev, next, ik)
}

// VerifyTransitionFrom is VerifyTransition for a prev that was itself
// accepted by VerifyCreate, VerifyTransition, VerifyTransitionFrom or
// VerifyReset (the directory's latest stored state, for example). It
// gives the same result as VerifyTransition for such a prev, faster: a
// DeviceCert of next whose encoding is byte-identical to the cert with the
// same id in prev is not verified again, because next must keep prev's
// identity key (rule 5, checked first) and every check of VerifyDeviceCert
// is a function of the IK and the cert's bytes only, so it passed when
// prev was accepted. next's own signature and every new or changed cert
// are verified as usual.
//
// It is sound only for a verified prev: with a prev from an untrusted
// source use VerifyTransition, which re-verifies every cert.
func VerifyTransitionFrom(prev, next *AccountState) error {
	if err := checkLink(prev, next); err != nil {
		return err
	}
	if next.IdentityKey != prev.IdentityKey {
		return fmt.Errorf("devices: %w: %s v%d has identity key %x, v%d had %x", ErrIdentityChanged, next.UserID, next.Version, next.IdentityKey[:8], prev.Version, prev.IdentityKey[:8])
	}
	b, err := next.body()
	if err != nil {
		return err
	}
	if !ed25519.Verify(next.IdentityKey[:], signedMessage(ctxAccountState, b), next.Signature[:]) {
		return fmt.Errorf("devices: %w: AccountState %s v%d: signature by its identity key does not verify", ErrSigner, next.UserID, next.Version)
	}
	for _, c := range next.Devices {
		if !sameCert(prev.Device(c.ID), c) {
			if err := VerifyDeviceCert(next.IdentityKey, c); err != nil {
				return err
			}
		}
		if rv := next.Revoked(c.ID); rv != nil {
			return fmt.Errorf("devices: %w: device %s (%q) is listed and revoked (%s at %v)", ErrRevokedDevice, c.ID, c.Name, rv.Reason, rv.Time)
		}
	}
	return checkRevocations(prev, next)
}

// sameCert reports whether a and b have the same canonical encoding.
func sameCert(a, b *DeviceCert) bool {
	if a == nil || b == nil {
		return false
	}
	ea, err := a.MarshalBinary()
	if err != nil {
		return false
	}
	eb, err := b.MarshalBinary()
	return err == nil && bytes.Equal(ea, eb)
}
