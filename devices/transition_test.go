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
	mallory := testIK("mallory")
	ikPub := c.ik.Public()
	phoneCert := c.v2.Device(c.phone.ID())
	cases := []struct {
		name   string
		mutate func(s *AccountState) ed25519.PrivateKey // returns the signing key, nil = keep signature
		target error
		substr string
	}{
		{"signature corrupted", func(s *AccountState) ed25519.PrivateKey { s.Signature[5] ^= 1; return nil }, ErrSigner, "does not verify"},
		{"signed by a device key", func(s *AccountState) ed25519.PrivateKey { return c.laptop.sign }, ErrSigner, ""},
		{"signed by another IK", func(s *AccountState) ed25519.PrivateKey { return ikPriv(mallory) }, ErrSigner, ""},
		{"IK replaced (not a reset)", func(s *AccountState) ed25519.PrivateKey {
			s.IdentityKey = mallory.Public()
			return ikPriv(mallory)
		}, ErrIdentityChanged, ""},
		{"IK replaced by a device key", func(s *AccountState) ed25519.PrivateKey {
			s.IdentityKey = c.laptop.SigningPublic()
			return c.laptop.sign
		}, ErrIdentityChanged, ""},
		{"other user", func(s *AccountState) ed25519.PrivateKey { s.UserID = "bob"; return ikPriv(c.ik) }, ErrUserMismatch, `"bob"`},
		{"version skip", func(s *AccountState) ed25519.PrivateKey { s.Version = 4; return ikPriv(c.ik) }, ErrVersion, "v4 follows v2, want v3"},
		{"version repeat", func(s *AccountState) ed25519.PrivateKey { s.Version = 2; return ikPriv(c.ik) }, ErrVersion, ""},
		{"prev hash mismatch", func(s *AccountState) ed25519.PrivateKey { s.PrevHash[0] ^= 1; return ikPriv(c.ik) }, ErrPrevHash, ""},
		{"prev hash of v1", func(s *AccountState) ed25519.PrivateKey { s.PrevHash, _ = c.v1.Hash(); return ikPriv(c.ik) }, ErrPrevHash, ""},
		{"timestamp goes back", func(s *AccountState) ed25519.PrivateKey {
			s.Timestamp = c.v2.Timestamp.Add(-time.Second)
			s.Revocations[0].Time = s.Timestamp
			return ikPriv(c.ik)
		}, ErrTimestamp, "before v2"},
		{"revocation after timestamp", func(s *AccountState) ed25519.PrivateKey {
			s.Revocations[0].Time = s.Timestamp.Add(time.Second)
			return ikPriv(c.ik)
		}, ErrTimestamp, "outside"},
		{"revived revoked device (revocation kept)", func(s *AccountState) ed25519.PrivateKey {
			s.Devices = append(s.Devices, phoneCert)
			sortDevices(s)
			return ikPriv(c.ik)
		}, ErrRevokedDevice, "listed and revoked"},
		{"revoke unknown device", func(s *AccountState) ed25519.PrivateKey {
			s.Revocations = append(s.Revocations, Revocation{Device: DeviceID{0xff}, Time: s.Timestamp, Reason: ReasonLost})
			return ikPriv(c.ik)
		}, ErrRevocation, "not in v2"},
		{"cert signed by another IK", func(s *AccountState) ed25519.PrivateKey {
			cert := *s.Devices[0]
			body, _ := cert.body()
			cert.Signature = mallory.sign(signedMessage(ctxDeviceCert, body))
			s.Devices[0] = &cert
			return ikPriv(c.ik)
		}, ErrDeviceCert, "identity key signature"},
		{"cert without back-signature", func(s *AccountState) ed25519.PrivateKey {
			cert := *s.Devices[0]
			cert.BackSignature = [64]byte{}
			s.Devices[0] = &cert
			return ikPriv(c.ik)
		}, ErrDeviceCert, "back-signature"},
		{"duplicate device", func(s *AccountState) ed25519.PrivateKey {
			s.Devices = append(s.Devices, s.Devices[0])
			return nil
		}, ErrDuplicateDevice, ""},
		{"unsorted devices", func(s *AccountState) ed25519.PrivateKey {
			tablet := mustCert(t, c.tablet, "tablet", ikPub, t0)
			_ = c.ik.IssueCert(tablet)
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
	v4, err := AddDevice(c.v3, c.ik, mustCert(t, c.tablet, "tablet", c.ik.Public(), t0.Add(3*time.Hour)), t0.Add(3*time.Hour))
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
			resign(next, ikPriv(c.ik))
			wantErr(t, VerifyTransition(c.v3, next), tc.target, tc.substr)
		})
	}
	// The helpers refuse the same things.
	_, err = AddDevice(v4, c.ik, mustCert(t, c.phone, "phone again", c.ik.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrRevokedDevice, "cannot be added again")
	_, err = AddDevice(v4, c.ik, mustCert(t, c.tablet, "tablet again", c.ik.Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrDuplicateDevice, "already")
	_, err = RevokeDevices(v4, c.ik, []DeviceID{c.phone.ID()}, ReasonLost, t0.Add(4*time.Hour))
	wantErr(t, err, ErrRevocation, "not in the account")
	_, err = RevokeDevices(c.v3, c.ik, []DeviceID{c.laptop.ID()}, ReasonLost, t0.Add(4*time.Hour))
	wantErr(t, err, ErrMalformed, "no devices")
	_, err = AddDevice(c.v3, testIK("mallory"), mustCert(t, c.tablet, "tablet", testIK("mallory").Public(), t0), t0.Add(4*time.Hour))
	wantErr(t, err, ErrSigner, "")
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
			resign(s, ikPriv(c.ik))
			wantErr(t, VerifyCreate(s), tc.target, "")
		})
	}
	s := clone(t, c.v1)
	s.Signature[0] ^= 1
	wantErr(t, VerifyCreate(s), ErrSigner, "")
}

// TestRecovery: the paper key re-derives IK on a new device, which adds
// itself and revokes every lost device; IK and safety number are unchanged.
func TestRecovery(t *testing.T) {
	c := newChain(t)
	words := testSecret("alice").PaperKey()
	secret, err := ParsePaperKey(words)
	if err != nil {
		t.Fatal(err)
	}
	ik := DeriveIdentityKey(secret)
	if ik.Public() != c.v2.IdentityKey {
		t.Fatal("paper key did not re-derive IK")
	}
	fresh := testDevice(t, "alice recovered phone")
	v3, err := Recover(c.v2, ik, mustCert(t, fresh, "recovered", ik.Public(), t0.Add(9*time.Hour)), t0.Add(9*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v2, v3); err != nil {
		t.Fatal(err)
	}
	if len(v3.Devices) != 1 || v3.Devices[0].ID != fresh.ID() || len(v3.Revocations) != 2 {
		t.Fatalf("recovered state: devices %d, revocations %d", len(v3.Devices), len(v3.Revocations))
	}
	bob := testIK("bob")
	before, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", c.v2.IdentityKey)
	after, _ := NewSafetyNumber("bob", bob.Public(), "alice@example.org", v3.IdentityKey)
	if before.String() != after.String() {
		t.Fatal("safety number changed on recovery")
	}
}

func TestReset(t *testing.T) {
	c := newChain(t)
	newIK := testIK("alice new")
	nd := testDevice(t, "alice new phone")
	at := t0.Add(10 * time.Hour)
	ns, err := NewResetState(c.v3, newIK, mustCert(t, nd, "new phone", newIK.Public(), at), at)
	if err != nil {
		t.Fatal(err)
	}
	rk := testResetKey()
	rkPub := rk.Public().(ed25519.PublicKey)
	ra, err := SignReset(rk, c.v3, ns, ResetLostAllKeys, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReset(c.v3, ra, rkPub); err != nil {
		t.Fatal(err)
	}
	b, _ := ra.MarshalBinary()
	ra2, err := ParseResetAuthorization(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReset(c.v3, ra2, rkPub); err != nil {
		t.Fatal(err)
	}
	// The new state is not a valid normal transition.
	wantErr(t, VerifyTransition(c.v3, ns), ErrIdentityChanged, "")
	// Safety number changes.
	bob := testIK("bob")
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
	withState := func(mut func(s *AccountState), k *IdentityKey) func(a *ResetAuthorization) {
		return func(a *ResetAuthorization) {
			s := clone(t, a.NewState)
			mut(s)
			resign(s, ikPriv(k))
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
		{"signed by the new IK", func(a *ResetAuthorization) {}, ikPriv(newIK), ErrReset, "reset key does not verify"},
		{"version mismatch", func(a *ResetAuthorization) { a.Version++ }, rk, ErrVersion, "reset names version 5"},
		{"prev hash mismatch", func(a *ResetAuthorization) { a.PrevHash[0] ^= 1 }, rk, ErrPrevHash, ""},
		{"user mismatch", func(a *ResetAuthorization) { a.UserID = "mallory" }, rk, ErrUserMismatch, ""},
		{"state skips a version", withState(func(s *AccountState) { s.Version = 5 }, newIK), rk, ErrVersion, ""},
		{"state links to wrong prev", withState(func(s *AccountState) { s.PrevHash[3] ^= 1 }, newIK), rk, ErrPrevHash, ""},
		{"state not signed by new IK", withState(func(s *AccountState) {}, c.ik), rk, ErrSigner, ""},
		{"state keeps old IK", withState(func(s *AccountState) { s.IdentityKey = c.ik.Public() }, c.ik), rk, ErrReset, "keeps the identity key"},
		{"old device not revoked", withState(func(s *AccountState) { s.Revocations = s.Revocations[:0] }, newIK), rk, ErrRevocation, "dropped"},
		{"reset before prev", func(a *ResetAuthorization) { a.Time = t0 }, rk, ErrTimestamp, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := ra.MarshalBinary()
			a, _ := ParseResetAuthorization(b)
			tc.mutate(a)
			sign(a, tc.key)
			wantErr(t, VerifyReset(c.v3, a, rkPub), tc.target, tc.substr)
		})
	}
	// A reset that leaves an old device unrevoked (dropping only the new revocation).
	b, _ = ra.MarshalBinary()
	a, _ := ParseResetAuthorization(b)
	s := clone(t, a.NewState)
	keep := s.Revocations[:0]
	for _, rv := range s.Revocations {
		if rv.Device != c.laptop.ID() {
			keep = append(keep, rv)
		}
	}
	s.Revocations = keep
	resign(s, ikPriv(newIK))
	a.NewState = s
	sign(a, rk)
	wantErr(t, VerifyReset(c.v3, a, rkPub), ErrReset, "is not revoked by the reset")
	wantErr(t, VerifyReset(c.v3, ra, rkPub[:31]), ErrReset, "31 bytes")
}
