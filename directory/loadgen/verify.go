package loadgen

import (
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// VerifyLookup checks a full lookup bundle (asked for with known size 0)
// for the canonical user id uid:
// checkpoint signature and witness quorum, the EpochRecord as the
// checkpoint's last leaf, the VRF proof and index, the map proof under the
// epoch's map root, and for a present account the AccountUpdate's index
// and map value and its AccountState's signatures by a lookup client's
// rule (devices.VerifyAccountStateForLookup: 2 + n signatures, not the
// DeviceCerts' account signing key signatures, which the state's
// signature covers; docs/protocol.md §7.1.7). It returns the
// account's state, or nil for an absent account. (The client library in
// verifier/ does more: held bundles, freshness, consistency, pinning;
// `keyline bench --verify` uses it.)
func VerifyLookup(trust *verifier.Trust, uid string, b *verifier.LookupBundle) (*devices.AccountState, error) {
	if b.Held() {
		return nil, fmt.Errorf("the bundle omits the checkpoint (ask with known size 0)")
	}
	cp, err := trust.OpenCheckpoint(b.Checkpoint)
	if err != nil {
		return nil, err
	}
	if cp.Size == 0 {
		return nil, fmt.Errorf("empty checkpoint")
	}
	hs := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(hs, cp.Size-1, cp.Size, hs.HashLeaf(b.EpochRecord), b.EpochRecordInclusion, cp.Hash[:]); err != nil {
		return nil, fmt.Errorf("epoch record inclusion: %w", err)
	}
	rec, err := klog.ParseEpochRecord(b.EpochRecord)
	if err != nil {
		return nil, err
	}
	index, err := trust.VRF.VerifyIndex([]byte(uid), b.VRFProof)
	if err != nil {
		return nil, err
	}
	mp, err := vmap.ParseProof(b.MapProof)
	if err != nil {
		return nil, err
	}
	// A present account's proof omits the value (vmap.InclusionDerived):
	// its path is checked below with the value the AccountUpdate implies.
	derived := mp.Kind == vmap.InclusionDerived
	var value vmap.Value
	found := derived
	if !derived {
		if value, found, err = vmap.Verify(rec.MapRoot, index, mp); err != nil {
			return nil, err
		}
	}
	if !found {
		if b.AccountUpdate != nil {
			return nil, fmt.Errorf("absent account served with an AccountUpdate")
		}
		return nil, nil
	}
	if b.AccountUpdate == nil {
		return nil, fmt.Errorf("present account served without an AccountUpdate")
	}
	if b.AccountUpdateIndex >= cp.Size-1 {
		return nil, fmt.Errorf("account update index %d is not before the epoch record", b.AccountUpdateIndex)
	}
	u, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		return nil, err
	}
	if u.Index != index {
		return nil, fmt.Errorf("account update is for another index")
	}
	want := vmap.MapValue(u.Version, b.AccountUpdateIndex, klog.EntryHash(b.AccountUpdate))
	if derived {
		if err := vmap.VerifyDerived(rec.MapRoot, index, mp, want); err != nil {
			return nil, fmt.Errorf("map proof with the account update's value: %w", err)
		}
	} else if want != value {
		return nil, fmt.Errorf("account update does not match the map value")
	}
	st, err := stateOf(u)
	if err != nil {
		return nil, err
	}
	if st.UserID != uid || st.Version != u.Version {
		return nil, fmt.Errorf("state is %s v%d, want %s v%d", st.UserID, st.Version, uid, u.Version)
	}
	return st, devices.VerifyAccountStateForLookup(st)
}
