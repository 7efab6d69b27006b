package loadgen

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/keyline/keyline/devices"
)

// Account is a deterministic synthetic account: its keys derive from a
// prefix and a number, so a later run can update accounts an earlier run
// created.
type Account struct {
	UserID string
	RK     [32]byte                   // root public key (the private key is not kept)
	ASK    *devices.AccountSigningKey // generation 1
	Device *devices.DeviceKey
}

// askCreated is the fixed creation time of every synthetic signing key
// cert, so that runs re-derive identical certs.
var askCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func seed(parts ...string) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}

// NewAccount returns synthetic account i under prefix (user id
// "<prefix>-<i>").
func NewAccount(prefix string, i int) (*Account, error) {
	uid := fmt.Sprintf("%s-%d", prefix, i)
	dk, err := devices.DeviceKeyFromSeeds(seed("keyline loadgen device", uid), seed("keyline loadgen x25519", uid))
	if err != nil {
		return nil, err
	}
	rk := devices.DeriveRootKey(devices.RecoverySecret(seed("keyline loadgen rk", uid)))
	s := seed("keyline loadgen ask", uid)
	ask, err := devices.NewAccountSigningKey(rk, uid, 1, bytes.NewReader(s[:]), askCreated)
	if err != nil {
		return nil, err
	}
	return &Account{UserID: uid, RK: rk.Public(), ASK: ask, Device: dk}, nil
}

// Create returns the account's signed version-1 state.
func (a *Account) Create(now time.Time) (*devices.AccountState, error) {
	c, err := a.Device.NewCert("loadgen", a.RK, now)
	if err != nil {
		return nil, err
	}
	return devices.NewAccount(a.ASK, a.RK, a.UserID, c, now)
}

// Touch returns the signed successor of prev that changes nothing but the
// version and timestamp: the cheapest valid update.
func (a *Account) Touch(prev *devices.AccountState, now time.Time) (*devices.AccountState, error) {
	h, err := prev.Hash()
	if err != nil {
		return nil, err
	}
	ts := now.Truncate(time.Second).UTC()
	if ts.Before(prev.Timestamp) {
		ts = prev.Timestamp
	}
	next := &devices.AccountState{
		UserID: prev.UserID, Version: prev.Version + 1, PrevHash: h, IdentityKey: prev.IdentityKey, SigningKey: prev.SigningKey,
		Devices: prev.Devices, Revocations: prev.Revocations, Timestamp: ts,
	}
	if err := next.Sign(a.ASK); err != nil {
		return nil, err
	}
	return next, nil
}

// Bulk makes synthetic accounts that share every key the formats allow:
// one root key, one account signing key (each account has its own
// SigningKeyCert, since that binds the user id) and one device with one
// issued DeviceCert (which binds the root key and the ASK, not the user
// id). An account then costs one key derivation and two signatures (the
// root key's over the SigningKeyCert, the ASK's over the AccountState),
// for building large benchmark directories.
type Bulk struct {
	prefix  string
	rk      *devices.RootKey
	askSeed [32]byte
	device  *devices.DeviceKey
	cert    *devices.DeviceCert // issued by the shared ASK
}

// NewBulk returns the bulk account maker for user ids "<prefix>-<i>".
func NewBulk(prefix string) (*Bulk, error) {
	dk, err := devices.DeviceKeyFromSeeds(seed("keyline loadgen bulk device", prefix), seed("keyline loadgen bulk x25519", prefix))
	if err != nil {
		return nil, err
	}
	b := &Bulk{
		prefix:  prefix,
		rk:      devices.DeriveRootKey(devices.RecoverySecret(seed("keyline loadgen bulk rk", prefix))),
		askSeed: seed("keyline loadgen bulk ask", prefix),
		device:  dk,
	}
	a, err := b.Account(0)
	if err != nil {
		return nil, err
	}
	c, err := dk.NewCert("loadgen", b.rk.Public(), askCreated)
	if err != nil {
		return nil, err
	}
	if err := a.ASK.IssueCert(b.rk.Public(), c); err != nil {
		return nil, err
	}
	b.cert = c
	return b, nil
}

// Account returns bulk account i, whose states Touch can extend.
func (b *Bulk) Account(i int) (*Account, error) {
	uid := fmt.Sprintf("%s-%d", b.prefix, i)
	ask, err := devices.NewAccountSigningKey(b.rk, uid, 1, bytes.NewReader(b.askSeed[:]), askCreated)
	if err != nil {
		return nil, err
	}
	return &Account{UserID: uid, RK: b.rk.Public(), ASK: ask, Device: b.device}, nil
}

// Create returns the signed version-1 state of bulk account i, created at
// now. It does not run devices.VerifyCreate (callers may check a sample).
func (b *Bulk) Create(i int, now time.Time) (*devices.AccountState, error) {
	a, err := b.Account(i)
	if err != nil {
		return nil, err
	}
	st := &devices.AccountState{
		UserID:      a.UserID,
		Version:     1,
		IdentityKey: a.RK,
		SigningKey:  a.ASK.Cert,
		Devices:     []*devices.DeviceCert{b.cert},
		Trusted:     []devices.DeviceID{b.cert.ID},
		Timestamp:   now.Truncate(time.Second).UTC(),
	}
	if err := st.Sign(a.ASK); err != nil {
		return nil, err
	}
	return st, nil
}
