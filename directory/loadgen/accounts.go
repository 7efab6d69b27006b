package loadgen

import (
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
	IK     *devices.IdentityKey
	Device *devices.DeviceKey
}

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
	return &Account{UserID: uid, IK: devices.IdentityKeyFromSeed(seed("keyline loadgen ik", uid)), Device: dk}, nil
}

// Create returns the account's signed version-1 state.
func (a *Account) Create(now time.Time) (*devices.AccountState, error) {
	c, err := a.Device.NewCert("loadgen", a.IK.Public(), now)
	if err != nil {
		return nil, err
	}
	return devices.NewAccount(a.IK, a.UserID, c, now)
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
		UserID: prev.UserID, Version: prev.Version + 1, PrevHash: h, IdentityKey: prev.IdentityKey,
		Devices: prev.Devices, Revocations: prev.Revocations, Timestamp: ts,
	}
	if err := next.Sign(a.IK); err != nil {
		return nil, err
	}
	return next, nil
}
