package auditor_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/auditor/audittest"
)

// parallelWorkers is the pre-check's goroutine count compared with the
// sequential replay (Workers = 1). More than the test machine's cores, so
// the race detector sees real interleavings.
const parallelWorkers = 4

// replayResult is everything a replay reports, minus the state directory.
type replayResult struct {
	status *auditor.Status // nil if Run failed
	err    string
	rule   auditor.Rule
	index  uint64
	detail string
	ev     []byte
	evFile string
}

func replayWith(t *testing.T, trust *verifier.Trust, src verifier.Source, batch, workers int) replayResult {
	t.Helper()
	a, err := auditor.Open(t.TempDir(), trust, src, &auditor.Options{BatchSize: batch, NoSync: true, Workers: workers})
	must(t, err)
	defer a.Close()
	var r replayResult
	_, err = a.Run(ctx, nil)
	var v *auditor.Violation
	switch {
	case errors.As(err, &v):
		r.rule, r.index, r.detail, r.ev, r.evFile = v.Rule, v.LogIndex, v.Detail, v.Evidence, filepath.Base(v.EvidencePath)
	case err != nil:
		r.err = err.Error()
	}
	st, err := a.Status(ctx)
	must(t, err)
	if st.Violation != nil {
		st.Violation.EvidencePath = filepath.Base(st.Violation.EvidencePath)
	}
	r.status = st
	return r
}

// sameReplay replays src with Workers = 1 (no pre-check) and Workers =
// parallelWorkers at each batch size and requires identical results: rule,
// log index, detail, evidence bytes, evidence file name and status. It
// returns the sequential result at the first batch size.
func sameReplay(t *testing.T, trust *verifier.Trust, src verifier.Source, batches ...int) replayResult {
	t.Helper()
	var first replayResult
	for n, batch := range batches {
		seq := replayWith(t, trust, src, batch, 1)
		par := replayWith(t, trust, src, batch, parallelWorkers)
		if seq.rule != par.rule || seq.index != par.index || seq.detail != par.detail || seq.err != par.err ||
			string(seq.ev) != string(par.ev) || seq.evFile != par.evFile {
			t.Fatalf("batch %d: sequential %s at %d (%s; err %q), parallel %s at %d (%s; err %q); evidence equal: %v",
				batch, seq.rule, seq.index, seq.detail, seq.err, par.rule, par.index, par.detail, par.err, string(seq.ev) == string(par.ev))
		}
		if !reflect.DeepEqual(seq.status, par.status) {
			t.Fatalf("batch %d: status differs:\nsequential %+v\nparallel   %+v", batch, seq.status, par.status)
		}
		if n == 0 {
			first = seq
		}
	}
	return first
}

// violationScenarios build violating logs on base(t) (3 accounts, seed 1).
// Every rule checked per entry has one; some place the violation after
// earlier versions of the same index in one batch, after a violation's
// successor, or next to a second violation, which is where a wrong
// pre-check cache would show.
var violationScenarios = []struct {
	name string
	rule auditor.Rule
	// build appends the attack; it may use d.Accounts["user0"].
	build func(t *testing.T, d *audittest.Directory, a *audittest.Account)
}{
	{"malformed-leaf", auditor.RuleMalformedLeaf, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		d.Log.Append([]byte{0x07, 1, 2})
		closeEpoch(t, d)
	}},
	{"payload", auditor.RulePayload, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AppendUpdate(a, a.Index, 2, klog.EntryHash(a.Leaf), klog.UpdateUpdate, []byte("not a state")))
		closeEpoch(t, d)
	}},
	{"create-existing", auditor.RuleCreateExisting, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		payload, _ := a.State.MarshalBinary()
		must(t, d.AddDevice(a))
		must(t, d.AppendUpdate(nil, a.Index, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
	}},
	{"version-rewrite", auditor.RuleVersionRewrite, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		v2 := a.Leaf
		must(t, d.AddDevice(a))
		d.Log.Append(v2)
		closeEpoch(t, d)
	}},
	{"version-skip", auditor.RuleVersionSkip, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Version = 3
		must(t, next.Sign(a.ASK))
		payload, _ := next.MarshalBinary()
		must(t, d.AppendUpdate(a, a.Index, 3, klog.EntryHash(a.Leaf), klog.UpdateUpdate, payload))
		closeEpoch(t, d)
	}},
	{"version-skip-new-index", auditor.RuleVersionSkip, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		b, err := d.NewAccountState("newbie", 1)
		must(t, err)
		b.State.Version, b.State.PrevHash = 2, [32]byte{9}
		must(t, b.State.Sign(b.ASK))
		payload, _ := b.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, 2, [32]byte{9}, klog.UpdateUpdate, payload))
		closeEpoch(t, d)
	}},
	{"prev-hash", auditor.RulePrevHash, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		payload, _ := next.MarshalBinary()
		must(t, d.AppendUpdate(a, a.Index, 3, [32]byte{7}, klog.UpdateUpdate, payload))
		closeEpoch(t, d)
	}},
	{"signature after two updates in the batch", auditor.RuleSignature, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		must(t, d.AddDevice(a))
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Signature[5] ^= 1
		must(t, d.Update(a, next))
		closeEpoch(t, d)
	}},
	{"signature, then a valid-looking successor", auditor.RuleSignature, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Signature[5] ^= 1
		must(t, d.Update(a, next))
		// v3 chains to the bad v2 and is signed by a's IK.
		must(t, d.AddDevice(a))
		closeEpoch(t, d)
	}},
	{"identity-changed", auditor.RuleIdentityChanged, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(d.Accounts["user1"]))
		_, _, st, err := d.ResetPayload(a, d.ResetKey)
		must(t, err)
		must(t, d.Update(a, st))
		closeEpoch(t, d)
	}},
	{"device-cert", auditor.RuleDeviceCert, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		other, err := d.NewAccountState("mallory", 1)
		must(t, err)
		_, c, err := d.NewDevice(a.RK, other.ASK, "evil")
		must(t, err)
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Devices = append(append([]*devices.DeviceCert{}, a.State.Devices...), c)
		sortCerts(next.Devices)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"device-cert on create", auditor.RuleDeviceCert, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		b, err := d.NewAccountState("victim", 1)
		must(t, err)
		other, err := d.NewAccountState("mallory", 1)
		must(t, err)
		b.State.Devices = other.State.Devices
		b.State.Trusted = nil
		must(t, b.State.Sign(b.ASK))
		payload, _ := b.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
	}},
	{"revoked-device", auditor.RuleRevokedDevice, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.Revoke(a, 0))
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		c, err := a.Devices[0].NewCert("device-0", a.RK.Public(), d.Time)
		must(t, err)
		must(t, a.ASK.IssueCert(a.RK.Public(), c))
		next.Devices = append(append([]*devices.DeviceCert{}, a.State.Devices...), c)
		sortCerts(next.Devices)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"revocation dropped", auditor.RuleRevocation, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.Revoke(a, 0))
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Revocations = nil
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"user-id-changed", auditor.RuleUserID, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		next := *a.State
		next.UserID = "someone-else"
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"user-id-two-indexes", auditor.RuleUserIndex, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		b, err := d.NewAccountState(a.UserID, 1)
		must(t, err)
		payload, _ := b.State.MarshalBinary()
		idx := a.Index
		idx[0] ^= 0xff
		must(t, d.AppendUpdate(nil, idx, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
	}},
	{"transition", auditor.RuleTransition, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Timestamp = a.State.Timestamp.Add(-3600e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"reset not signed by the reset key", auditor.RuleReset, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		_, evil, _ := ed25519.GenerateKey(nil)
		p, _, _, err := d.ResetPayload(a, evil)
		must(t, err)
		must(t, d.AppendUpdate(a, a.Index, 2, klog.EntryHash(a.Leaf), klog.UpdateReset, p))
		closeEpoch(t, d)
	}},
	{"update by the old IK after a valid reset", auditor.RuleIdentityChanged, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		oldIK, oldState := a.ASK, a.State
		must(t, d.Reset(a))
		must(t, d.AddDevice(a)) // valid, by the new IK
		next := *oldState
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Revocations = a.State.Revocations
		next.Devices = a.State.Devices
		next.Trusted = nil
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(oldIK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
	}},
	{"two violations in one batch: the first is reported", auditor.RuleDeviceCert, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		b, err := d.NewAccountState("victim", 1)
		must(t, err)
		other, err := d.NewAccountState("mallory", 1)
		must(t, err)
		b.State.Devices = other.State.Devices
		b.State.Trusted = nil
		must(t, b.State.Sign(b.ASK))
		payload, _ := b.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, 1, [32]byte{}, klog.UpdateCreate, payload))
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Signature[5] ^= 1
		must(t, d.Update(a, next))
		closeEpoch(t, d)
	}},
	{"epoch-number", auditor.RuleEpochNumber, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		root, err := d.MapRoot()
		must(t, err)
		d.AppendEpoch(klog.EpochRecord{Epoch: d.Epoch + 2, MapRoot: root, Timestamp: uint64(d.Time.Unix()) + 10})
		d.Log.Publish()
	}},
	{"epoch-time", auditor.RuleEpochTime, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		root, err := d.MapRoot()
		must(t, err)
		d.AppendEpoch(klog.EpochRecord{Epoch: d.Epoch + 1, MapRoot: root, Timestamp: 5})
		d.Log.Publish()
	}},
	{"map-root", auditor.RuleMapRoot, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		must(t, d.AddDevice(a))
		delete(d.Pending, a.Index)
		closeEpoch(t, d)
	}},
	{"checkpoint-end", auditor.RuleCheckpointEnd, func(t *testing.T, d *audittest.Directory, a *audittest.Account) {
		must(t, d.AddDevice(a))
		d.Log.Publish()
	}},
}

// TestParallelSameViolations replays every violating scenario (and the
// golden ones) with and without the parallel pre-check, at batch sizes
// that put the violation's previous entry in an earlier batch, in the same
// batch, and everything in one batch, and requires the same violation,
// byte-identical evidence and the same status.
func TestParallelSameViolations(t *testing.T) {
	batches := []int{1, 3, 4096}
	for _, sc := range violationScenarios {
		t.Run(sc.name, func(t *testing.T) {
			d, a := base(t)
			sc.build(t, d, a)
			r := sameReplay(t, d.Trust(), d.Log, batches...)
			if r.rule != sc.rule {
				t.Fatalf("scenario reports %s (err %q), want %s", r.rule, r.err, sc.rule)
			}
		})
	}
	for rule, build := range goldenCases {
		t.Run("golden "+rule, func(t *testing.T) {
			d, _ := base(t)
			build(t, d)
			if r := sameReplay(t, d.Trust(), d.Log, batches...); string(r.rule) != rule {
				t.Fatalf("reports %s (err %q), want %s", r.rule, r.err, rule)
			}
		})
	}
	t.Run("honest", func(t *testing.T) {
		d := newDir(t)
		honest(t, d)
		if r := sameReplay(t, d.Trust(), d.Log, batches...); r.rule != "" || r.err != "" {
			t.Fatalf("honest log: %s %s", r.rule, r.err)
		}
	})
}

// TestParallelMutatedLogs replays logs derived from an honest history by one
// random mutation (a flipped bit, a dropped, duplicated or swapped leaf),
// served under a valid checkpoint, with and without the pre-check.
func TestParallelMutatedLogs(t *testing.T) {
	const seed = 5
	d, err := audittest.NewDirectory(seed)
	must(t, err)
	honest(t, d)
	for _, name := range []string{"user0", "user4"} {
		a := d.Accounts[name]
		must(t, d.AddDevice(a))
		must(t, d.AddDevice(a))
		must(t, d.Revoke(a, 1))
	}
	must(t, d.Reset(d.Accounts["user5"]))
	must(t, d.AddDevice(d.Accounts["user5"]))
	closeEpoch(t, d)
	size := d.Log.Size()
	leaves := make([][]byte, size)
	for i := range size {
		leaves[i] = d.Log.Leaf(i)
	}
	mutations := 48
	if testing.Short() {
		mutations = 12
	}
	rules := map[string]int{} // rule name ("" for none) -> count
	rng := rand.New(rand.NewPCG(seed, 1))
	for m := range mutations {
		ls := make([][]byte, 0, size+1)
		for _, l := range leaves {
			ls = append(ls, append([]byte(nil), l...))
		}
		j := 1 + rng.IntN(len(ls)-2) // keep the genesis epoch and the last leaf
		var what string
		switch m % 4 {
		case 0:
			bit := rng.IntN(8 * len(ls[j]))
			ls[j][bit/8] ^= 1 << (bit % 8)
			what = fmt.Sprintf("flip bit %d of leaf %d", bit, j)
		case 1:
			ls = append(ls[:j], ls[j+1:]...)
			what = fmt.Sprintf("drop leaf %d", j)
		case 2:
			ls = append(ls[:j+1], ls[j:]...)
			what = fmt.Sprintf("duplicate leaf %d", j)
		case 3:
			ls[j], ls[j+1] = ls[j+1], ls[j]
			what = fmt.Sprintf("swap leaves %d and %d", j, j+1)
		}
		t.Run(what, func(t *testing.T) {
			md, err := audittest.NewDirectory(seed) // same keys, genesis leaf only
			must(t, err)
			for _, l := range ls[1:] {
				md.Log.Append(l)
			}
			md.Log.Publish()
			r := sameReplay(t, md.Trust(), md.Log, 2, 4096)
			rules[string(r.rule)]++
		})
	}
	t.Logf("rules found by the mutations: %v", rules)
	if len(rules) < 4 {
		t.Errorf("mutations found only %v; the test is too weak", rules)
	}
}
