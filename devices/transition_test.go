package devices

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// TestVerifyTransitionRejects mutates a valid v2 -> v3 transition one rule
// at a time. Mutations re-sign the state with the key named, so each case
// fails on its own rule, not on a stale signature.
func TestVerifyTransitionRejects(t *testing.T) {
	c := newChain(t)
	mallory := testRK("mallory")
	malloryASK := testASK(t, mallory, "alice@example.org", 1, "mallory")
	malloryASK2 := testASK(t, mallory, "alice@example.org", 2, "mallory 2")
	otherGen1 := testASK(t, c.rk, "alice@example.org", 1, "alice other 1")
	gen2 := testASK(t, c.rk, "alice@example.org", 2, "alice 2")
	gen3 := testASK(t, c.rk, "alice@example.org", 3, "alice 3")
	ikPub := c.rk.Public()
	phoneCert := c.v2.Device(c.phone.ID())
	cases := []struct {
		name   string
		mutate func(s *AccountState) ed25519.PrivateKey // returns the signing key, nil = keep signature
		target error
		substr string
	}{
		{"signature corrupted", func(s *AccountState) ed25519.PrivateKey { s.Signature[5] ^= 1; return nil }, ErrSigner, "does not verify"},
		{"signed by a device key", func(s *AccountState) ed25519.PrivateKey { return c.laptop.sign }, ErrSigner, ""},
		{"signed by another account's ASK", func(s *AccountState) ed25519.PrivateKey { return askPriv(malloryASK) }, ErrSigner, ""},
		{"signed by RK instead of the ASK", func(s *AccountState) ed25519.PrivateKey { return rkPriv(c.rk) }, ErrSigner, ""},
		{"RK replaced (not a reset)", func(s *AccountState) ed25519.PrivateKey {
			s.IdentityKey = mallory.Public()
			return askPriv(c.ask)
		}, ErrIdentityChanged, ""},
		{"RK and cert replaced (not a reset)", func(s *AccountState) ed25519.PrivateKey {
			s.IdentityKey = mallory.Public()
			s.SigningKey = malloryASK2.Cert
			return askPriv(malloryASK2)
		}, ErrIdentityChanged, ""},
		{"RK replaced by a device key", func(s *AccountState) ed25519.PrivateKey {
			s.IdentityKey = c.laptop.SigningPublic()
			return askPriv(c.ask)
		}, ErrIdentityChanged, ""},
		{"same generation, other ASK", func(s *AccountState) ed25519.PrivateKey {
			s.SigningKey = otherGen1.Cert
			return askPriv(otherGen1)
		}, ErrSigningKeyCert, "different signing key cert for generation 1"},
		{"generation skipped", func(s *AccountState) ed25519.PrivateKey {
			s.SigningKey = gen3.Cert
			return askPriv(gen3)
		}, ErrSigningKeyCert, "jumps from signing key generation 1 to 3"},
		{"new generation certified by another RK", func(s *AccountState) ed25519.PrivateKey {
			s.SigningKey = malloryASK2.Cert
			return askPriv(malloryASK2)
		}, ErrSigningKeyCert, "root key signature does not verify"},
		{"new generation, certs not re-signed", func(s *AccountState) ed25519.PrivateKey {
			s.SigningKey = gen2.Cert
			return askPriv(gen2)
		}, ErrDeviceCert, "signing key signature"},
		{"duplicate device name", func(s *AccountState) ed25519.PrivateKey {
			tablet := mustCert(t, c.tablet, s.Devices[0].Name, ikPub, t0)
			_ = c.ask.IssueCert(ikPub, tablet)
			s.Devices = append(s.Devices, tablet)
			sortDevices(s)
			return askPriv(c.ask)
		}, ErrDeviceName, "both named"},
		{"other user", func(s *AccountState) ed25519.PrivateKey { s.UserID = "bob"; return askPriv(c.ask) }, ErrUserMismatch, `"bob"`},
		{"version skip", func(s *AccountState) ed25519.PrivateKey { s.Version = 4; return askPriv(c.ask) }, ErrVersion, "v4 follows v2, want v3"},
		{"version repeat", func(s *AccountState) ed25519.PrivateKey { s.Version = 2; return askPriv(c.ask) }, ErrVersion, ""},
		{"prev hash mismatch", func(s *AccountState) ed25519.PrivateKey { s.PrevHash[0] ^= 1; return askPriv(c.ask) }, ErrPrevHash, ""},
		{"prev hash of v1", func(s *AccountState) ed25519.PrivateKey { s.PrevHash, _ = c.v1.Hash(); return askPriv(c.ask) }, ErrPrevHash, ""},
		{"timestamp goes back", func(s *AccountState) ed25519.PrivateKey {
			s.Timestamp = c.v2.Timestamp.Add(-time.Second)
			s.Revocations[0].Time = s.Timestamp
			return askPriv(c.ask)
		}, ErrTimestamp, "before v2"},
		{"revocation after timestamp", func(s *AccountState) ed25519.PrivateKey {
			s.Revocations[0].Time = s.Timestamp.Add(time.Second)
			return askPriv(c.ask)
		}, ErrTimestamp, "outside"},
		{"revived revoked device (revocation kept)", func(s *AccountState) ed25519.PrivateKey {
			s.Devices = append(s.Devices, phoneCert)
			sortDevices(s)
			return askPriv(c.ask)
		}, ErrRevokedDevice, "listed and revoked"},
		{"revoke unknown device", func(s *AccountState) ed25519.PrivateKey {
			s.Revocations = append(s.Revocations, Revocation{Device: DeviceID{0xff}, Time: s.Timestamp, Reason: ReasonLost})
			return askPriv(c.ask)
		}, ErrRevocation, "not in v2"},
		{"cert signed by another ASK", func(s *AccountState) ed25519.PrivateKey {
			cert := *s.Devices[0]
			body, _ := cert.body()
			cert.Signature = malloryASK.sign(signedMessage(ctxDeviceCert, body))
			s.Devices[0] = &cert
			return askPriv(c.ask)
		}, ErrDeviceCert, "signing key signature"},
		{"cert without back-signature", func(s *AccountState) ed25519.PrivateKey {
			cert := *s.Devices[0]
			cert.BackSignature = [64]byte{}
			s.Devices[0] = &cert
			return askPriv(c.ask)
		}, ErrDeviceCert, "back-signature"},
		{"duplicate device", func(s *AccountState) ed25519.PrivateKey {
			s.Devices = append(s.Devices, s.Devices[0])
			return nil
		}, ErrDuplicateDevice, ""},
		{"unsorted devices", func(s *AccountState) ed25519.PrivateKey {
			tablet := mustCert(t, c.tablet, "tablet", ikPub, t0)
			_ = c.ask.IssueCert(ikPub, tablet)
			s.Devices = append(s.Devices, tablet)
			if s.Devices[0].ID[0] < s.Devices[1].ID[0] {
				s.Devices[0], s.Devices[1] = s.Devices[1], s.Devices[0]
			}
			return nil
		}, ErrMalformed, "not sorted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := clone(t, c.v3)
			if k := tc.mutate(next); k != nil {
				resign(next, k)
			}
			wantErr(t, VerifyTransition(c.v2, next), tc.target, tc.substr)
		})
	}
}

func sortDevices(s *AccountState) {
	for i := 1; i < len(s.Devices); i++ {
		for j := i; j > 0 && string(s.Devices[j].ID[:]) < string(s.Devices[j-1].ID[:]); j-- {
			s.Devices[j], s.Devices[j-1] = s.Devices[j-1], s.Devices[j]
		}
	}
}

// TestRevocationsAppendOnly covers v3 -> v4 changes to existing revocations.
func TestRevocationsAppendOnly(t *testing.T) {
	c := newChain(t)
	v4, err := AddDevice(c.v3, c.ask, mustCert(t, c.tablet, "tablet", c.rk.Public(), t0.Add(3*time.Hour)), t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v3, v4); err != nil {
		t.Fatal(err)
	}
	phone := c.v2.Device(c.phone.ID())
	cases := []struct {
		name   string
		mutate func(s *AccountState)
		target error
		substr string
	}{
		{"revocation dropped", func(s *AccountState) { s.Revocations = nil }, ErrRevocation, "dropped"},
		{"revocation dropped and device revived", func(s *AccountState) {
			s.Revocations = nil
			s.Devices = append(s.Devices, phone)
			sortDevices(s)
		}, ErrRevokedDevice, "revoked (lost) and is listed again"},
		{"revocation reason altered", func(s *AccountState) { s.Revocations[0].Reason = ReasonRetired }, ErrRevocation, "altered"},
		{"revocation time altered", func(s *AccountState) { s.Revocations[0].Time = s.Revocations[0].Time.Add(time.Second) }, ErrRevocation, "altered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := clone(t, v4)
			tc.mutate(next)
			resign(next, askPriv(c.ask))
			wantErr(t, VerifyTransition(c.v3, next), tc.target, tc.substr)
		})
	}
	// The helpers refuse the same things.
	_, err = AddDevice(v4, c.ask, mustCert(t, c.phone, "phone again", c.rk.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrRevokedDevice, "cannot be added again")
	_, err = AddDevice(v4, c.ask, mustCert(t, c.tablet, "tablet again", c.rk.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrDuplicateDevice, "already")
	_, err = RevokeDevices(v4, c.ask, []DeviceID{c.phone.ID()}, ReasonLost, t0.Add(4*time.Hour))
	wantErr(t, err, ErrRevocation, "not in the account")
	_, err = RevokeDevices(c.v3, c.ask, []DeviceID{c.laptop.ID()}, ReasonLost, t0.Add(4*time.Hour))
	wantErr(t, err, ErrMalformed, "no devices")
	_, err = AddDevice(c.v3, testASK(t, testRK("mallory"), "alice@example.org", 1, "mallory"), mustCert(t, c.tablet, "tablet", c.rk.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrSigner, "not the account's current one")
	_, err = AddDevice(v4, c.ask, mustCert(t, testDevice(t, "tv"), "tablet", c.rk.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrDeviceName, "already has a device named")
}

func TestVerifyCreateRejects(t *testing.T) {
	c := newChain(t)
	cases := []struct {
		name   string
		mutate func(s *AccountState)
		target error
	}{
		{"version 2", func(s *AccountState) { s.Version = 2 }, ErrVersion},
		{"non-zero prev hash", func(s *AccountState) { s.PrevHash[31] = 1 }, ErrPrevHash},
		{"revocations", func(s *AccountState) {
			s.Revocations = []Revocation{{Device: DeviceID{1}, Time: s.Timestamp}}
		}, ErrRevocation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := clone(t, c.v1)
			tc.mutate(s)
			resign(s, askPriv(c.ask))
			wantErr(t, VerifyCreate(s), tc.target, "")
		})
	}
	s := clone(t, c.v1)
	s.Signature[0] ^= 1
	wantErr(t, VerifyCreate(s), ErrSigner, "")
}

// TestRecovery: the paper key re-derives RK on a new device, which
// certifies the next signing key generation, adds itself and revokes
// every lost device; RK and safety number are unchanged, and the lost
// devices' signing key is refused from then on.
func TestRecovery(t *testing.T) {
	c := newChain(t)
	words := testSecret("alice").PaperKey()
	secret, err := ParsePaperKey(words)
	if err != nil {
		t.Fatal(err)
	}
	rk := DeriveRootKey(secret)
	if rk.Public() != c.v2.IdentityKey {
		t.Fatal("paper key did not re-derive RK")
	}
	fresh := testDevice(t, "alice recovered phone")
	ask2 := testASK(t, rk, "alice@example.org", 2, "alice 2")
	v3, err := Recover(c.v2, ask2, mustCert(t, fresh, "recovered", rk.Public(), t0.Add(9*time.Hour)), t0.Add(9*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v2, v3); err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransitionFrom(c.v2, v3); err != nil {
		t.Fatal(err)
	}
	if len(v3.Devices) != 1 || v3.Devices[0].ID != fresh.ID() || len(v3.Revocations) != 2 || v3.Generation() != 2 {
		t.Fatalf("recovered state: devices %d, revocations %d, generation %d", len(v3.Devices), len(v3.Revocations), v3.Generation())
	}
	bob := testRK("bob")
	before, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", c.v2.IdentityKey)
	after, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", v3.IdentityKey)
	if before.String() != after.String() {
		t.Fatal("safety number changed on recovery")
	}
	// The stolen laptop still holds generation 1: whatever it signs on top
	// of v3 is stale, even though its cert carries a valid RK signature.
	_, err = AddDevice(v3, c.ask, mustCert(t, testDevice(t, "evil"), "evil", rk.Public(), t0.Add(10*time.Hour)), t0.Add(10*time.Hour))
	wantErr(t, err, ErrStaleSigningKey, "rotated out")
	forged := clone(t, v3)
	forged.Version, forged.PrevHash = 4, mustHash(t, v3)
	forged.SigningKey = c.ask.Cert
	forged.Devices = []*DeviceCert{mustCert(t, testDevice(t, "evil"), "evil", rk.Public(), t0.Add(10*time.Hour))}
	_ = c.ask.IssueCert(rk.Public(), forged.Devices[0])
	forged.Revocations = append([]Revocation(nil), v3.Revocations...)
	forged.Trusted = nil
	forged.Timestamp = t0.Add(10 * time.Hour)
	if err := forged.Sign(c.ask); err != nil {
		t.Fatal(err)
	}
	if err := VerifyAccountState(forged); err != nil {
		t.Fatalf("the forged state is self-consistent, so only the generation rule stops it: %v", err)
	}
	wantErr(t, VerifyTransition(v3, forged), ErrStaleSigningKey, "generation 1")
	wantErr(t, VerifyTransitionFrom(v3, forged), ErrStaleSigningKey, "generation 1")
}

// TestRotate: rotate-key keeps chosen devices (re-signed by the new ASK),
// revokes the rest, and a rotation must go to exactly the next generation.
func TestRotate(t *testing.T) {
	c := newChain(t)
	v4, err := AddDevice(c.v3, c.ask, mustCert(t, c.tablet, "tablet", c.rk.Public(), t0.Add(3*time.Hour)), t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ask2 := testASK(t, c.rk, "alice@example.org", 2, "alice 2")
	v5, err := Rotate(v4, ask2, Rotation{Keep: []DeviceID{c.tablet.ID()}, Reason: ReasonCompromised, Trusted: []DeviceID{c.tablet.ID()}}, t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(v5.Devices) != 1 || v5.Devices[0].ID != c.tablet.ID() || v5.Revoked(c.laptop.ID()).Reason != ReasonCompromised {
		t.Fatal("rotation kept or revoked the wrong devices")
	}
	if sameCert(v4.Device(c.tablet.ID()), v5.Device(c.tablet.ID())) {
		t.Fatal("kept cert not re-signed")
	}
	if len(v5.Trusted) != 1 || !v5.IsTrusted(c.tablet.ID()) {
		t.Fatalf("trusted after rotation: %v", v5.Trusted)
	}
	if err := VerifyTransitionFrom(v4, v5); err != nil {
		t.Fatal(err)
	}
	_, err = Rotate(v4, testASK(t, c.rk, "alice@example.org", 3, "alice 3"), Rotation{Reason: ReasonLost}, t0.Add(4*time.Hour))
	wantErr(t, err, ErrSigningKeyCert, "want 2")
	_, err = Rotate(v4, ask2, Rotation{Keep: []DeviceID{c.phone.ID()}, Reason: ReasonLost}, t0.Add(4*time.Hour))
	wantErr(t, err, ErrRevocation, "not in the account")
	// The new generation keeps working; the old one does not.
	v6, err := RevokeDevices(v5, ask2, nil, ReasonUnspecified, t0.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(v5, v6); err != nil {
		t.Fatal(err)
	}
	_, err = RevokeDevices(v5, c.ask, nil, ReasonUnspecified, t0.Add(5*time.Hour))
	wantErr(t, err, ErrStaleSigningKey, "")
}

func TestReset(t *testing.T) {
	c := newChain(t)
	at := t0.Add(10 * time.Hour)
	newRK, newASK, ra := newReset(t, c.v3, "alice new", at)
	ns := ra.NewState
	rk := testResetKey()
	rkPub := rk.Public().(ed25519.PublicKey)
	if err := VerifyReset(c.v3, ra, rkPub, testWindow); err != nil {
		t.Fatal(err)
	}
	if !ra.EffectiveAt.Equal(at.Add(testWindow)) || !ra.Pending(at.Add(testWindow-time.Second)) || ra.Pending(at.Add(testWindow)) {
		t.Fatalf("window: effective at %v", ra.EffectiveAt)
	}
	b, _ := ra.MarshalBinary()
	ra2, err := ParseResetAuthorization(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReset(c.v3, ra2, rkPub, testWindow); err != nil {
		t.Fatal(err)
	}
	// A client requiring a longer window refuses it.
	wantErr(t, VerifyResetEntry(ra, rkPub, 2*testWindow), ErrResetWindow, "before the")
	// The new state is not a valid normal transition.
	wantErr(t, VerifyTransition(c.v3, ns), ErrIdentityChanged, "")
	// Safety number changes.
	bob := testRK("bob")
	s1, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", c.v3.IdentityKey)
	s2, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", ns.IdentityKey)
	if s1.String() == s2.String() {
		t.Fatal("safety number unchanged by reset")
	}

	otherKey := ed25519.NewKeyFromSeed(func() []byte { s := seed32("not the reset key"); return s[:] }())
	sign := func(a *ResetAuthorization, k ed25519.PrivateKey) {
		body, err := a.body()
		if err != nil {
			t.Fatal(err)
		}
		copy(a.Signature[:], ed25519.Sign(k, signedMessage(ctxReset, body)))
	}
	withState := func(mut func(s *AccountState), k *AccountSigningKey) func(a *ResetAuthorization) {
		return func(a *ResetAuthorization) {
			s := clone(t, a.NewState)
			mut(s)
			resign(s, askPriv(k))
			a.NewState = s
			a.Version, a.PrevHash, a.UserID = s.Version, s.PrevHash, s.UserID
		}
	}
	cases := []struct {
		name   string
		mutate func(a *ResetAuthorization)
		key    ed25519.PrivateKey
		target error
		substr string
	}{
		{"signed by another key", func(a *ResetAuthorization) {}, otherKey, ErrReset, "reset key does not verify"},
		{"signed by the new RK", func(a *ResetAuthorization) {}, rkPriv(newRK), ErrReset, "reset key does not verify"},
		{"version mismatch", func(a *ResetAuthorization) { a.Version++ }, rk, ErrVersion, "reset names version 5"},
		{"prev hash mismatch", func(a *ResetAuthorization) { a.PrevHash[0] ^= 1 }, rk, ErrPrevHash, ""},
		{"user mismatch", func(a *ResetAuthorization) { a.UserID = "mallory" }, rk, ErrUserMismatch, ""},
		{"window too short", func(a *ResetAuthorization) { a.EffectiveAt = a.Time.Add(testWindow - time.Second) }, rk, ErrResetWindow, ""},
		{"current keys not prev's", func(a *ResetAuthorization) { a.Current = KeysOf(c.v2) }, rk, ErrReset, "current keys are not those"},
		{"current device forged", func(a *ResetAuthorization) {
			k := *a.Current
			k.Devices = []*DeviceCert{mustCert(t, testDevice(t, "evil"), "evil", c.rk.Public(), t0)}
			a.Current = &k
		}, rk, ErrDeviceCert, ""},
		{"state skips a version", withState(func(s *AccountState) { s.Version = 5 }, newASK), rk, ErrVersion, ""},
		{"state links to wrong prev", withState(func(s *AccountState) { s.PrevHash[3] ^= 1 }, newASK), rk, ErrPrevHash, ""},
		{"state not signed by new ASK", withState(func(s *AccountState) {}, c.ask), rk, ErrSigner, ""},
		{"state keeps old RK", withState(func(s *AccountState) { s.IdentityKey = c.rk.Public() }, newASK), rk, ErrReset, "keeps the root key"},
		{"old device not revoked", withState(func(s *AccountState) { s.Revocations = s.Revocations[:0] }, newASK), rk, ErrReset, "is not revoked by the reset"},
		{"reset before prev", func(a *ResetAuthorization) { a.Time = t0; a.EffectiveAt = t0.Add(testWindow) }, rk, ErrTimestamp, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := ra.MarshalBinary()
			a, _ := ParseResetAuthorization(b)
			tc.mutate(a)
			sign(a, tc.key)
			wantErr(t, VerifyReset(c.v3, a, rkPub, testWindow), tc.target, tc.substr)
		})
	}
	// A reset backdated past the current signing key's certification
	// (so that it would look effective at once) fails even without the
	// previous state.
	b, _ = ra.MarshalBinary()
	back, _ := ParseResetAuthorization(b)
	back.Time = c.ask.Cert.Created.Add(-2 * testWindow)
	back.EffectiveAt = back.Time.Add(testWindow)
	sign(back, rk)
	wantErr(t, VerifyResetEntry(back, rkPub, testWindow), ErrTimestamp, "backdated")
	// A reset that drops an earlier revocation (the phone's).
	b, _ = ra.MarshalBinary()
	a, _ := ParseResetAuthorization(b)
	s := clone(t, a.NewState)
	keep := s.Revocations[:0]
	for _, rv := range s.Revocations {
		if rv.Device != c.phone.ID() {
			keep = append(keep, rv)
		}
	}
	s.Revocations = keep
	resign(s, askPriv(newASK))
	a.NewState = s
	sign(a, rk)
	wantErr(t, VerifyReset(c.v3, a, rkPub, testWindow), ErrRevocation, "dropped")
	wantErr(t, VerifyReset(c.v3, ra, rkPub[:31], testWindow), ErrReset, "31 bytes")
}

// TestAfterReset: during the window the owner's current signing key (or a
// rotation by RK) cancels the reset; the reset's new keys may be used only
// after the window; a rotated-out key cannot cancel.
func TestAfterReset(t *testing.T) {
	c := newChain(t)
	at := t0.Add(10 * time.Hour)
	_, newASK, ra := newReset(t, c.v3, "alice new", at)
	// Cancel with the current ASK (a re-signed copy of v3 following the reset entry).
	cancel := func(ask *AccountSigningKey, when time.Time) *AccountState {
		next, err := successor(c.v3, ask, when)
		if err != nil {
			t.Fatal(err)
		}
		next.Version, next.PrevHash = ra.Version+1, mustHash(t, ra.NewState)
		if err := next.Sign(ask); err != nil {
			t.Fatal(err)
		}
		return next
	}
	cancelled, err := VerifyAfterReset(c.v3, ra, cancel(c.ask, at.Add(time.Minute)))
	if err != nil || !cancelled {
		t.Fatalf("cancel by current ASK: cancelled=%v err=%v", cancelled, err)
	}
	// Cancel by RK: a rotation to generation 2.
	cancelled, err = VerifyAfterReset(c.v3, ra, cancel(testASK(t, c.rk, "alice@example.org", 2, "alice 2"), at.Add(time.Minute)))
	if err != nil || !cancelled {
		t.Fatalf("cancel by RK rotation: cancelled=%v err=%v", cancelled, err)
	}
	// Too late.
	_, err = VerifyAfterReset(c.v3, ra, cancel(c.ask, ra.EffectiveAt))
	wantErr(t, err, ErrResetWindow, "after its window")
	// A rotated-out key cannot cancel: after a rotation to generation 2,
	// a reset, and a cancel signed by generation 1.
	v4, err := Rotate(c.v3, testASK(t, c.rk, "alice@example.org", 2, "alice 2"), Rotation{Keep: []DeviceID{c.laptop.ID()}, Reason: ReasonCompromised}, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, _, ra4 := newReset(t, v4, "alice new", at)
	stale, err := successor(v4, c.ask, at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	stale.Version, stale.PrevHash = ra4.Version+1, mustHash(t, ra4.NewState)
	if err := stale.Sign(c.ask); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyAfterReset(v4, ra4, stale)
	wantErr(t, err, ErrStaleSigningKey, "")
	// The new keys: refused during the window, accepted after it.
	early, err := RevokeDevices(ra.NewState, newASK, nil, ReasonUnspecified, at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyAfterReset(c.v3, ra, early)
	wantErr(t, err, ErrResetPending, "before the reset takes effect")
	later, err := RevokeDevices(ra.NewState, newASK, nil, ReasonUnspecified, ra.EffectiveAt)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err = VerifyAfterReset(c.v3, ra, later)
	if err != nil || cancelled {
		t.Fatalf("update after the window: cancelled=%v err=%v", cancelled, err)
	}
	// A third root key.
	_, otherASK, _ := newReset(t, c.v3, "mallory", at)
	third, err := successor(ra.NewState, otherASK, ra.EffectiveAt)
	if err == nil {
		third.IdentityKey = otherASK.Cert.Key
		_ = third.Sign(otherASK)
		_, err = VerifyAfterReset(c.v3, ra, third)
	}
	wantErr(t, err, ErrIdentityChanged, "neither")
}
