package devices

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// VerifyCreate checks a first AccountState: version 1, zero PrevHash, no
// revocations, signing key generation 1, and self-consistent
// (VerifyAccountState).
func VerifyCreate(next *AccountState) error {
	return groupVerified(func(g *sigGroup) error { return verifyCreate(g, next, fullRule) })
}

// verifyCreate is VerifyCreate with its signatures checked through g
// (verifySignature), next's under rule (verifyAccountState).
func verifyCreate(g *sigGroup, next *AccountState, rule checkRule) error {
	if next == nil {
		return fmt.Errorf("%w: nil AccountState", ErrMalformed)
	}
	if next.Version != 1 {
		return fmt.Errorf("%w: create has version %d, want 1", ErrVersion, next.Version)
	}
	if next.PrevHash != ([32]byte{}) {
		return fmt.Errorf("%w: create has non-zero previous hash", ErrPrevHash)
	}
	if len(next.Revocations) != 0 {
		return fmt.Errorf("%w: create revokes %d devices of no previous state", ErrRevocation, len(next.Revocations))
	}
	if gen := next.Generation(); gen != 1 {
		return fmt.Errorf("%w: create has signing key generation %d, want 1", ErrSigningKeyCert, gen)
	}
	return verifyAccountState(g, next, rule)
}

// VerifyTransition checks that next is a valid normal update of prev:
//
//   - same user id;
//   - signing key generation: not older than prev's (ErrStaleSigningKey:
//     a rotated-out key, e.g. on a stolen device); the same generation
//     only with the very same SigningKeyCert; a new generation only
//     exactly prev's + 1 (ErrSigningKeyCert), certified by the same root
//     key (checked with the next rule and VerifyAccountState);
//   - version prev.Version+1, PrevHash == prev.Hash(), timestamp not
//     before prev's;
//   - same root key (ErrIdentityChanged otherwise; only VerifyReset allows
//     a new one);
//   - next is self-consistent (VerifyAccountState): cert by RK, signed by
//     its ASK, every DeviceCert doubly signed under that ASK, unique names,
//     no listed device revoked;
//   - every revocation of prev is kept unchanged, and every new revocation
//     names a device listed in prev, at a time within
//     [prev.Timestamp, next.Timestamp]; no device revoked in prev is listed.
//
// prev is trusted to have been verified already.
func VerifyTransition(prev, next *AccountState) error {
	if err := checkHead(prev, next); err != nil {
		return err
	}
	if err := VerifyAccountState(next); err != nil {
		return err
	}
	return checkRevocations(prev, next)
}

// VerifyTransitionOfVerified is VerifyTransition for a next that
// VerifyAccountState (or VerifyTransition, VerifyTransitionFrom,
// VerifyCreate) already accepted in this process: it checks every rule of
// VerifyTransition between prev and next except next's self-consistency
// (its signatures, certs and device list), which VerifyTransition would
// only check again. A client uses it for the history entry it has just
// verified as a lookup's answer. A next that VerifyAccountStateForLookup
// (or a lookup memo, NewLookupMemo) accepted gives the lookup rule's
// result: the transition rules and the signatures a lookup checks. With
// any other next use VerifyTransition.
func VerifyTransitionOfVerified(prev, next *AccountState) error {
	if err := checkHead(prev, next); err != nil {
		return err
	}
	return checkRevocations(prev, next)
}

// checkHead checks everything of VerifyTransition except next's own
// signatures and the revocation rules.
func checkHead(prev, next *AccountState) error {
	if prev == nil || next == nil {
		return fmt.Errorf("%w: nil AccountState", ErrMalformed)
	}
	if next.UserID != prev.UserID {
		return fmt.Errorf("%w: next state is for %q, previous for %q", ErrUserMismatch, next.UserID, prev.UserID)
	}
	if next.IdentityKey != prev.IdentityKey {
		return fmt.Errorf("%w: %s v%d has root key %x, v%d had %x", ErrIdentityChanged, next.UserID, next.Version, next.IdentityKey[:8], prev.Version, prev.IdentityKey[:8])
	}
	if err := checkGeneration(prev, next); err != nil {
		return err
	}
	return checkLink(prev, next)
}

// checkGeneration applies the signing key generation rule of
// VerifyTransition.
func checkGeneration(prev, next *AccountState) error {
	if prev.SigningKey == nil || next.SigningKey == nil {
		return fmt.Errorf("%w: AccountState has no signing key cert", ErrMalformed)
	}
	pg, ng := prev.SigningKey.Generation, next.SigningKey.Generation
	switch {
	case ng < pg:
		return fmt.Errorf("%w: %s v%d is signed by signing key generation %d, but v%d already uses generation %d (the older key was rotated out)", ErrStaleSigningKey, next.UserID, next.Version, ng, prev.Version, pg)
	case ng == pg:
		if !next.SigningKey.equal(prev.SigningKey) {
			return fmt.Errorf("%w: %s v%d carries a different signing key cert for generation %d than v%d", ErrSigningKeyCert, next.UserID, next.Version, ng, prev.Version)
		}
	case ng != pg+1:
		return fmt.Errorf("%w: %s v%d jumps from signing key generation %d to %d (want %d)", ErrSigningKeyCert, next.UserID, next.Version, pg, ng, pg+1)
	}
	return nil
}

// checkLink checks user id, version, previous hash and timestamp.
func checkLink(prev, next *AccountState) error {
	if prev == nil || next == nil {
		return fmt.Errorf("%w: nil AccountState", ErrMalformed)
	}
	if next.UserID != prev.UserID {
		return fmt.Errorf("%w: next state is for %q, previous for %q", ErrUserMismatch, next.UserID, prev.UserID)
	}
	if prev.Version == ^uint64(0) || next.Version != prev.Version+1 {
		return fmt.Errorf("%w: %s v%d follows v%d, want v%d", ErrVersion, next.UserID, next.Version, prev.Version, prev.Version+1)
	}
	h, err := prev.Hash()
	if err != nil {
		return err
	}
	if next.PrevHash != h {
		return fmt.Errorf("%w: %s v%d names previous hash %x, v%d hashes to %x", ErrPrevHash, next.UserID, next.Version, next.PrevHash[:8], prev.Version, h[:8])
	}
	if next.Timestamp.Before(prev.Timestamp) {
		return fmt.Errorf("%w: %s v%d timestamp %v is before v%d's %v", ErrTimestamp, next.UserID, next.Version, next.Timestamp, prev.Version, prev.Timestamp)
	}
	return nil
}

// checkRevocations checks the revocation rules between prev and next.
func checkRevocations(prev, next *AccountState) error {
	for _, c := range next.Devices {
		if rv := prev.Revoked(c.ID); rv != nil {
			return fmt.Errorf("%w: device %s (%q) was revoked (%s) and is listed again", ErrRevokedDevice, c.ID, c.Name, rv.Reason)
		}
	}
	for _, old := range prev.Revocations {
		rv := next.Revoked(old.Device)
		if rv == nil {
			return fmt.Errorf("%w: revocation of device %s was dropped", ErrRevocation, old.Device)
		}
		if rv.Reason != old.Reason || !rv.Time.Equal(old.Time) {
			return fmt.Errorf("%w: revocation of device %s was altered", ErrRevocation, old.Device)
		}
	}
	for _, rv := range next.Revocations {
		if prev.Revoked(rv.Device) != nil {
			continue
		}
		if prev.Device(rv.Device) == nil {
			return fmt.Errorf("%w: new revocation names device %s, which is not in v%d", ErrRevocation, rv.Device, prev.Version)
		}
		if rv.Time.Before(prev.Timestamp) || rv.Time.After(next.Timestamp) {
			return fmt.Errorf("%w: revocation of device %s at %v is outside [%v, %v]", ErrTimestamp, rv.Device, rv.Time, prev.Timestamp, next.Timestamp)
		}
	}
	return nil
}

// NewAccount returns the signed version-1 AccountState for userID with
// one device, whose back-signed cert first is issued by ask, which must be
// generation 1 (NewAccountSigningKey).
func NewAccount(ask *AccountSigningKey, rkPub [32]byte, userID string, first *DeviceCert, now time.Time) (*AccountState, error) {
	c := *first
	if err := ask.IssueCert(rkPub, &c); err != nil {
		return nil, err
	}
	s := &AccountState{
		UserID:      userID,
		Version:     1,
		IdentityKey: rkPub,
		SigningKey:  ask.Cert,
		Devices:     []*DeviceCert{&c},
		Trusted:     []DeviceID{c.ID},
		Timestamp:   now.Truncate(time.Second).UTC(),
	}
	if err := s.Sign(ask); err != nil {
		return nil, err
	}
	if err := VerifyCreate(s); err != nil {
		return nil, err
	}
	return s, nil
}

// successor returns an unsigned copy of prev as version prev.Version+1
// under the account signing key ask. If ask is not prev's ASK, every kept
// DeviceCert is re-signed by ask (their back-signatures name RK, so they
// stay valid).
func successor(prev *AccountState, ask *AccountSigningKey, now time.Time) (*AccountState, error) {
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	ts := now.Truncate(time.Second).UTC()
	if ts.Before(prev.Timestamp) {
		ts = prev.Timestamp // never let a slow clock break the timestamp rule
	}
	next := &AccountState{
		UserID:      prev.UserID,
		Version:     prev.Version + 1,
		PrevHash:    h,
		IdentityKey: prev.IdentityKey,
		SigningKey:  ask.Cert,
		Devices:     slices.Clone(prev.Devices),
		Trusted:     slices.Clone(prev.Trusted),
		Revocations: slices.Clone(prev.Revocations),
		Timestamp:   ts,
	}
	if !ask.Cert.equal(prev.SigningKey) {
		next.Trusted = nil // no device holds the new ASK until it is handed over
		for i, d := range next.Devices {
			c := *d
			if err := ask.IssueCert(prev.IdentityKey, &c); err != nil {
				return nil, err
			}
			next.Devices[i] = &c
		}
	}
	return next, nil
}

func (s *AccountState) addDevice(c *DeviceCert) error {
	if s.Device(c.ID) != nil {
		return fmt.Errorf("%w: device %s is already in the account", ErrDuplicateDevice, c.ID)
	}
	if rv := s.Revoked(c.ID); rv != nil {
		return fmt.Errorf("%w: device %s was revoked (%s) and cannot be added again", ErrRevokedDevice, c.ID, rv.Reason)
	}
	for _, d := range s.Devices {
		if d.Name == c.Name {
			return withCause(ErrDuplicateDevice, fmt.Errorf("%w: the account already has a device named %q (%s)", ErrDeviceName, c.Name, d.ID))
		}
	}
	i, _ := slices.BinarySearchFunc(s.Devices, c.ID, func(e *DeviceCert, id DeviceID) int { return bytes.Compare(e.ID[:], id[:]) })
	s.Devices = slices.Insert(s.Devices, i, c)
	return nil
}

func (s *AccountState) revoke(id DeviceID, reason RevocationReason) error {
	i := slices.IndexFunc(s.Devices, func(c *DeviceCert) bool { return c.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: device %s is not in the account", ErrRevocation, id)
	}
	s.Devices = slices.Delete(s.Devices, i, i+1)
	s.Trusted = slices.DeleteFunc(s.Trusted, func(t DeviceID) bool { return t == id })
	rv := Revocation{Device: id, Time: s.Timestamp, Reason: reason}
	j, _ := slices.BinarySearchFunc(s.Revocations, id, func(e Revocation, id DeviceID) int { return bytes.Compare(e.Device[:], id[:]) })
	s.Revocations = slices.Insert(s.Revocations, j, rv)
	return nil
}

func finish(prev, next *AccountState, ask *AccountSigningKey) (*AccountState, error) {
	if err := next.Sign(ask); err != nil {
		return nil, err
	}
	if err := VerifyTransition(prev, next); err != nil {
		return nil, err
	}
	return next, nil
}

// AddDevice returns the signed state prev.Version+1 adding the back-signed
// cert c (which ask issues). ask must be prev's account signing key (an
// older generation fails with ErrStaleSigningKey).
func AddDevice(prev *AccountState, ask *AccountSigningKey, c *DeviceCert, now time.Time) (*AccountState, error) {
	return addDevice(prev, ask, c, false, now)
}

func addDevice(prev *AccountState, ask *AccountSigningKey, c *DeviceCert, trusted bool, now time.Time) (*AccountState, error) {
	if err := checkSigner(prev, ask); err != nil {
		return nil, err
	}
	next, err := successor(prev, ask, now)
	if err != nil {
		return nil, err
	}
	cc := *c
	if err := ask.IssueCert(prev.IdentityKey, &cc); err != nil {
		return nil, err
	}
	if err := next.addDevice(&cc); err != nil {
		return nil, err
	}
	if trusted {
		if err := next.trust(cc.ID); err != nil {
			return nil, err
		}
	}
	return finish(prev, next, ask)
}

// checkSigner requires ask to be prev's current account signing key.
func checkSigner(prev *AccountState, ask *AccountSigningKey) error {
	if ask == nil || ask.Cert == nil {
		return fmt.Errorf("%w: no account signing key", ErrSigner)
	}
	if g, pg := ask.Generation(), prev.Generation(); g < pg {
		return fmt.Errorf("%w: this signing key is generation %d, %s v%d uses generation %d: it was rotated out", ErrStaleSigningKey, g, prev.UserID, prev.Version, pg)
	}
	if !ask.Cert.equal(prev.SigningKey) {
		return fmt.Errorf("%w: this signing key is not the account's current one (generation %d)", ErrSigner, prev.Generation())
	}
	return nil
}

// TrustDevice returns the signed state prev.Version+1 recording that
// device id (listed in prev) now holds the account signing key ask
// (handed over with SealHandover). ask must be prev's.
func TrustDevice(prev *AccountState, ask *AccountSigningKey, id DeviceID, now time.Time) (*AccountState, error) {
	if err := checkSigner(prev, ask); err != nil {
		return nil, err
	}
	next, err := successor(prev, ask, now)
	if err != nil {
		return nil, err
	}
	if err := next.trust(id); err != nil {
		return nil, err
	}
	return finish(prev, next, ask)
}

func (s *AccountState) trust(id DeviceID) error {
	if s.Device(id) == nil {
		return fmt.Errorf("%w: device %s is not in the account", ErrRevocation, id)
	}
	i, found := slices.BinarySearchFunc(s.Trusted, id, func(e, id DeviceID) int { return bytes.Compare(e[:], id[:]) })
	if !found {
		s.Trusted = slices.Insert(s.Trusted, i, id)
	}
	return nil
}

// RevokeDevices returns the signed state prev.Version+1 without the devices
// ids, each recorded as revoked at the new timestamp for reason. At least
// one device must remain. ask must be prev's account signing key.
func RevokeDevices(prev *AccountState, ask *AccountSigningKey, ids []DeviceID, reason RevocationReason, now time.Time) (*AccountState, error) {
	if err := checkSigner(prev, ask); err != nil {
		return nil, err
	}
	next, err := successor(prev, ask, now)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := next.revoke(id, reason); err != nil {
			return nil, err
		}
	}
	return finish(prev, next, ask)
}

// Rotation says what a rotation (Rotate) keeps.
type Rotation struct {
	Keep   []DeviceID       // devices that stay (certs re-signed by the new ASK)
	Reason RevocationReason // why every other device is revoked
	Add    *DeviceCert      // optional back-signed cert of a new device (the recovering one)
	// Trusted lists the devices that hold the new ASK (the device running
	// the rotation; Add is always trusted).
	Trusted []DeviceID
}

// Rotate is the rotation transition (account rotate-key, account recover):
// ask is a new account signing key of generation prev's + 1, certified by
// the root key (NewAccountSigningKey with the paper key); the devices in
// r.Keep stay (their certs re-signed by ask), every other device of prev
// is revoked for r.Reason, and r.Add, if not nil, is added. The root key,
// and so the safety number, is unchanged; everything the old signing key
// signs from now on is refused (ErrStaleSigningKey).
func Rotate(prev *AccountState, ask *AccountSigningKey, r Rotation, now time.Time) (*AccountState, error) {
	if ask == nil || ask.Cert == nil {
		return nil, fmt.Errorf("%w: no account signing key", ErrSigner)
	}
	if g, want := ask.Generation(), prev.Generation()+1; g != want {
		return nil, fmt.Errorf("%w: rotation to generation %d, want %d", ErrSigningKeyCert, g, want)
	}
	next, err := successor(prev, ask, now)
	if err != nil {
		return nil, err
	}
	add := r.Add
	for _, d := range prev.Devices {
		if slices.Contains(r.Keep, d.ID) || add != nil && d.ID == add.ID {
			continue
		}
		if err := next.revoke(d.ID, r.Reason); err != nil {
			return nil, err
		}
	}
	for _, id := range r.Keep {
		if next.Device(id) == nil {
			return nil, fmt.Errorf("%w: device %s to keep is not in the account", ErrRevocation, id)
		}
	}
	trusted := slices.Clone(r.Trusted)
	if add != nil {
		if next.Device(add.ID) == nil {
			cc := *add
			if err := ask.IssueCert(prev.IdentityKey, &cc); err != nil {
				return nil, err
			}
			if err := next.addDevice(&cc); err != nil {
				return nil, err
			}
		}
		trusted = append(trusted, add.ID)
	}
	for _, id := range trusted {
		if err := next.trust(id); err != nil {
			return nil, err
		}
	}
	return finish(prev, next, ask)
}

// Recover is the paper-key recovery transition: Rotate to ask (generation
// prev's + 1) keeping no device but the recovering device's back-signed
// cert c (trusted), every other device revoked with ReasonLost.
func Recover(prev *AccountState, ask *AccountSigningKey, c *DeviceCert, now time.Time) (*AccountState, error) {
	return Rotate(prev, ask, Rotation{Reason: ReasonLost, Add: c}, now)
}

// Resign returns the signed state prev.Version+1 with the same devices
// and revocations, signed by prev's account signing key ask: the smallest
// update, used to cancel a pending reset (VerifyAfterReset).
func Resign(prev *AccountState, ask *AccountSigningKey, now time.Time) (*AccountState, error) {
	return RevokeDevices(prev, ask, nil, ReasonUnspecified, now)
}

// VerifyTransitionFrom is VerifyTransition for a prev that was itself
// accepted by VerifyCreate, VerifyTransition, VerifyTransitionFrom or
// VerifyReset (the directory's latest stored state, for example). It
// gives the same result as VerifyTransition for such a prev, faster: when
// next keeps prev's SigningKeyCert, that cert is not verified again, nor is
// a DeviceCert of next whose encoding is byte-identical to the cert with
// the same id in prev, because next keeps prev's user id, root key and ASK
// (checked first) and every check of VerifySigningKeyCert and
// VerifyDeviceCert is a function of those and the cert's bytes only, so it
// passed when prev was accepted. next's own signature and every new or
// changed cert are verified as usual.
//
// It is sound only for a verified prev: with a prev from an untrusted
// source use VerifyTransition, which re-verifies every cert.
func VerifyTransitionFrom(prev, next *AccountState) error {
	return groupVerified(func(g *sigGroup) error { return verifyTransitionFrom(g, prev, next, fullRule) })
}

// verifyTransitionFrom is VerifyTransitionFrom with its signatures checked
// through g (verifySignature), next's under rule: with lookupRule no
// cert's ASK signature is verified, as next's signature by that same key,
// checked here through g, covers every cert (verifyAccountState).
func verifyTransitionFrom(g *sigGroup, prev, next *AccountState, rule checkRule) error {
	if err := checkHead(prev, next); err != nil {
		return err
	}
	b, err := next.body()
	if err != nil {
		return err
	}
	sameASK := next.SigningKey.equal(prev.SigningKey)
	if sameASK {
		// The SigningKeyCert prev was accepted with, for the same user id
		// and root key (checkHead): VerifySigningKeyCert, a function of
		// those and the cert's bytes, passed then.
		err = verifyStateSignatureOnly(g, next, b)
	} else {
		err = verifyStateSignature(g, next, b)
	}
	if err != nil {
		return err
	}
	for _, c := range next.Devices {
		if !sameASK || !sameCert(prev.Device(c.ID), c) {
			if err := verifyDeviceCert(g, &next.IdentityKey, &next.SigningKey.Key, c, rule == lookupRule); err != nil {
				return err
			}
		}
	}
	if err := checkDeviceList(next); err != nil {
		return err
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
