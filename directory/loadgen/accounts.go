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
