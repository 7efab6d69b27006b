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

// Held is what a load generator worker keeps from the last full bundle it
// verified: the checkpoint and its EpochRecord, against which it verifies
// the held-checkpoint bundles served while its known size is the served
// one (docs/protocol.md §7.1.5).
type Held struct {
	Checkpoint *verifier.VerifiedCheckpoint
	Epoch      *klog.EpochRecord
}

// Size is the known tree size to send (0 for a nil Held).
func (h *Held) Size() uint64 {
	if h == nil {
		return 0
	}
	return h.Checkpoint.Size
}

// VerifyLookup checks a full lookup bundle for the canonical user id uid:
// checkpoint signature and witness quorum, the EpochRecord as the
// checkpoint's last leaf, the VRF proof and index, the map proof under the
// epoch's map root, and for a present account the AccountUpdate's index
// and map value and its AccountState's signatures. It returns the
// account's state, or nil for an absent account. (The client library in
// verifier/ does more: freshness, consistency, pinning.)
func VerifyLookup(trust *verifier.Trust, uid string, b *verifier.LookupBundle) (*devices.AccountState, error) {
	st, _, err := VerifyLookupHeld(trust, uid, b, nil)
	return st, err
}

// VerifyLookupHeld is VerifyLookup for a worker that holds h (nil: none):
// a held-checkpoint bundle is verified against h, a full bundle as by
// VerifyLookup. It returns what to hold next.
func VerifyLookupHeld(trust *verifier.Trust, uid string, b *verifier.LookupBundle, h *Held) (*devices.AccountState, *Held, error) {
	if b.Held() {
		if h == nil {
			return nil, nil, fmt.Errorf("held-checkpoint bundle, but no checkpoint is held")
		}
		if len(b.EpochRecord) != 0 || len(b.EpochRecordInclusion) != 0 || len(b.Consistency) != 0 {
			return nil, nil, fmt.Errorf("bundle omits the checkpoint but not its epoch record or proofs")
		}
	} else {
		cp, err := trust.OpenCheckpoint(b.Checkpoint)
		if err != nil {
			return nil, nil, err
		}
		if cp.Size == 0 {
			return nil, nil, fmt.Errorf("empty checkpoint")
		}
		hs := rfc6962.DefaultHasher
		if err := proof.VerifyInclusion(hs, cp.Size-1, cp.Size, hs.HashLeaf(b.EpochRecord), b.EpochRecordInclusion, cp.Hash[:]); err != nil {
			return nil, nil, fmt.Errorf("epoch record inclusion: %w", err)
		}
		rec, err := klog.ParseEpochRecord(b.EpochRecord)
		if err != nil {
			return nil, nil, err
		}
		h = &Held{Checkpoint: cp, Epoch: rec}
	}
	index, err := trust.VRF.VerifyIndex([]byte(uid), b.VRFProof)
	if err != nil {
		return nil, nil, err
	}
	mp, err := vmap.ParseProof(b.MapProof)
	if err != nil {
		return nil, nil, err
	}
	value, found, err := vmap.Verify(h.Epoch.MapRoot, index, mp)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		if b.AccountUpdate != nil {
			return nil, nil, fmt.Errorf("absent account served with an AccountUpdate")
		}
		return nil, h, nil
	}
	if b.AccountUpdateIndex >= h.Checkpoint.Size-1 {
		return nil, nil, fmt.Errorf("account update index %d is not before the epoch record", b.AccountUpdateIndex)
	}
	u, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		return nil, nil, err
	}
	if u.Index != index || vmap.MapValue(u.Version, b.AccountUpdateIndex, klog.EntryHash(b.AccountUpdate)) != value {
		return nil, nil, fmt.Errorf("account update does not match the map value")
	}
	st, err := stateOf(u)
	if err != nil {
		return nil, nil, err
	}
	if st.UserID != uid || st.Version != u.Version {
		return nil, nil, fmt.Errorf("state is %s v%d, want %s v%d", st.UserID, st.Version, uid, u.Version)
	}
	return st, h, devices.VerifyAccountState(st)
}
