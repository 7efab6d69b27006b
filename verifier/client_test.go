package verifier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
)

// hookSource runs hook (once) inside the next Lookup, after the client
// loaded its state and before the bundle is returned: another process
// acting on the same state file while this one waits for the network.
type hookSource struct {
	*testDir
	mu   sync.Mutex
	hook func()
}

func (s *hookSource) Lookup(ctx context.Context, uid string, known uint64) (*LookupBundle, error) {
	s.mu.Lock()
	h := s.hook
	s.hook = nil
	s.mu.Unlock()
	if h != nil {
		h()
	}
	return s.testDir.Lookup(ctx, uid, known)
}

func newTestClient(t *testing.T, d *testDir, path string, src Source) *Client {
	c := NewClient(d.trust, path, src)
	c.Now = func() time.Time { return d.now }
	return c
}

// TestClientsInterleavePinAndLookup: a monitor-like client looks up bob
// while another client (another process, same state file) verifies bob's
// key and pins an unrelated contact. The verified pin and the other pin
// must survive the lookup's save.
func TestClientsInterleavePinAndLookup(t *testing.T) {
	d := world(t)
	p := filepath.Join(t.TempDir(), "state.json")
	src := &hookSource{testDir: d}
	monitor := newTestClient(t, d, p, src)
	verify := newTestClient(t, d, p, d)
	bobIK := d.accounts["bob"].ik.Public()
	aliceIK := d.accounts["alice"].ik.Public()
	src.hook = func() {
		if err := verify.Pin("bob", bobIK, true); err != nil {
			t.Error(err)
		}
		if err := verify.Pin("alice", aliceIK, true); err != nil {
			t.Error(err)
		}
	}
	res, err := monitor.Lookup(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	// Verified against the re-loaded state: the verified pin matches.
	if res.Pin != PinMatchVerified {
		t.Fatalf("pin status %v, want %v", res.Pin, PinMatchVerified)
	}
	st, err := monitor.State()
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Contacts["bob"]; c == nil || !c.Verified || c.IK != bobIK {
		t.Fatalf("verified pin of bob lost: %+v", c)
	}
	if c := st.Contacts["alice"]; c == nil || !c.Verified || c.IK != aliceIK {
		t.Fatalf("pin of alice lost: %+v", c)
	}
	if st.Checkpoint == nil {
		t.Fatal("lookup did not advance the checkpoint")
	}

	// Lookup of carol (absent) while the other client pins dave: both stay.
	src.hook = func() {
		if err := verify.Pin("dave", [32]byte{7}, true); err != nil {
			t.Error(err)
		}
	}
	if _, err := monitor.Lookup(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	st, _ = monitor.State()
	if c := st.Contacts["dave"]; c == nil || !c.Verified {
		t.Fatalf("pin of dave lost: %+v", c)
	}
	if c := st.Contacts["bob"]; c == nil || !c.Verified {
		t.Fatalf("verified pin of bob lost: %+v", c)
	}
}

// TestClientLookupAfterOtherAdvanced: another client advanced the
// checkpoint while this one was waiting; the lookup is verified again
// against the new last checkpoint instead of failing or rolling it back.
func TestClientLookupAfterOtherAdvanced(t *testing.T) {
	d := world(t)
	p := filepath.Join(t.TempDir(), "state.json")
	src := &hookSource{testDir: d}
	a := newTestClient(t, d, p, src)
	b := newTestClient(t, d, p, d)
	if _, err := a.Lookup(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	src.hook = func() {
		d.publish(d.addDevice("bob", "bob-tablet"))
		if _, err := b.Lookup(context.Background(), "bob"); err != nil {
			t.Error(err)
		}
	}
	if _, err := a.Lookup(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	st, _ := a.State()
	if string(st.Checkpoint) != string(d.cp) || st.Contacts["bob"] == nil || st.Contacts["alice"] == nil {
		t.Fatalf("state %+v", st)
	}
}

const childStateEnv = "KEYLINE_TEST_STATE_CHILD"

// TestClientStateChildProcess pins contacts from this process and from a
// child process (this test binary re-executed) on the same state file at
// the same time; no pin may be lost.
func TestClientStateChildProcess(t *testing.T) {
	const n = 40
	if path := os.Getenv(childStateEnv); path != "" {
		pinMany(t, path, "child", n)
		return
	}
	p := filepath.Join(t.TempDir(), "state.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientStateChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childStateEnv+"="+p)
	out := make(chan error, 1)
	var buf []byte
	go func() {
		var err error
		buf, err = cmd.CombinedOutput()
		out <- err
	}()
	pinMany(t, p, "parent", n)
	if err := <-out; err != nil {
		t.Fatalf("child: %v\n%s", err, buf)
	}
	st, err := LoadClientState(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"parent", "child"} {
		for i := 0; i < n; i++ {
			uid := who + strconv.Itoa(i)
			if c := st.Contacts[uid]; c == nil || !c.Verified || c.IK != [32]byte{byte(i)} {
				t.Errorf("pin of %s lost: %+v", uid, c)
			}
		}
	}
}

func pinMany(t *testing.T, path, who string, n int) {
	c := &Client{StatePath: path}
	for i := 0; i < n; i++ {
		if err := c.Pin(fmt.Sprintf("%s%d", who, i), [32]byte{byte(i)}, true); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientLookupAtMaxContacts: a new contact that cannot be pinned fails
// the lookup (it would be trusted on first use again and again) and leaves
// the state file unchanged.
func TestClientLookupAtMaxContacts(t *testing.T) {
	d := world(t)
	p := filepath.Join(t.TempDir(), "state.json")
	st := &ClientState{}
	for i := 0; i < MaxContacts; i++ {
		if err := st.Pin(fmt.Sprintf("c%d", i), [32]byte{1}, false, d.now); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	c := newTestClient(t, d, p, d)
	_, err := c.Lookup(context.Background(), "alice")
	wantErr(t, err, ErrState)
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Fatal("state changed by a lookup whose contact could not be pinned")
	}
	// ClientState.Apply itself reports it.
	res, err := VerifyLookup(d.trust, st, "alice", d.bundle("alice", 0), d.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(res, d.now); !errors.Is(err, ErrState) || st.Checkpoint != nil {
		t.Fatalf("Apply at MaxContacts: %v (checkpoint advanced: %v)", err, st.Checkpoint != nil)
	}
}

// forgeNewIK publishes, as a normal update (not a reset), a new version of
// uid's account under a new identity key: what a malicious directory or a
// stolen-server attacker would serve to swap keys without a reset entry.
func forgeNewIK(t *testing.T, d *testDir, uid string) entry {
	t.Helper()
	a := d.accounts[uid]
	prev := a.state
	s, _ := devices.NewRecoverySecret(rand.Reader)
	a.ik = devices.DeriveRootKey(s)
	var err error
	if a.ask, err = devices.NewAccountSigningKey(a.ik, uid, 1, rand.Reader, d.now); err != nil {
		t.Fatal(err)
	}
	c := d.newDevice(a, uid+"-evil")
	if err := a.ask.IssueCert(a.ik.Public(), c); err != nil {
		t.Fatal(err)
	}
	h, err := prev.Hash()
	if err != nil {
		t.Fatal(err)
	}
	st := &devices.AccountState{UserID: uid, Version: prev.Version + 1, PrevHash: h, IdentityKey: a.ik.Public(), SigningKey: a.ask.Cert,
		Devices: []*devices.DeviceCert{c}, Timestamp: prev.Timestamp.Add(time.Second)}
	if err := st.Sign(a.ask); err != nil {
		t.Fatal(err)
	}
	a.state = st
	return entry{uid, d.updateLeaf(a, klog.UpdateUpdate, st.Version, enc(t, st))}
}

func TestClientIdentityChangedWithoutReset(t *testing.T) {
	for _, verified := range []bool{false, true} {
		t.Run(fmt.Sprintf("verified=%v", verified), func(t *testing.T) {
			d := world(t)
			c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
			ctx := context.Background()
			old := d.accounts["alice"].ik.Public()
			if _, err := c.Lookup(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if verified {
				if err := c.Pin("alice", old, true); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(c.StatePath)
			d.publish(forgeNewIK(t, d, "alice"))
			_, err := c.Lookup(ctx, "alice")
			wantErr(t, err, ErrIdentityChanged, ErrSafetyNumberChanged, ErrHistory, devices.ErrIdentityChanged)
			var snc *SafetyNumberChangedError
			if !errors.As(err, &snc) || !snc.Unexplained || snc.Reset || snc.Result != nil || snc.Old != old || snc.New != d.accounts["alice"].ik.Public() {
				t.Fatalf("got %#v", err)
			}
			t.Log(err)
			if after, _ := os.ReadFile(c.StatePath); string(after) != string(before) {
				t.Fatal("state changed: the forged key was pinned")
			}
		})
	}
}

func TestClientIdentityChangedByReset(t *testing.T) {
	for _, verified := range []bool{false, true} {
		t.Run(fmt.Sprintf("verified=%v", verified), func(t *testing.T) {
			d := world(t)
			c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
			ctx := context.Background()
			old := d.accounts["alice"].ik.Public()
			if _, err := c.Lookup(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if verified {
				if err := c.Pin("alice", old, true); err != nil {
					t.Fatal(err)
				}
			}
			// A reset, then a normal update: the latest entry is not the
			// reset, but the history explains the new key by it.
			d.publish(d.reset("alice"))
			d.publish(d.addDevice("alice", "alice-new-laptop"))
			nik := d.accounts["alice"].ik.Public()
			res, err := c.Lookup(ctx, "alice")
			if verified {
				var snc *SafetyNumberChangedError
				if !errors.As(err, &snc) || !snc.Reset || snc.Unexplained || snc.Result == nil || snc.New != nik || errors.Is(err, ErrIdentityChanged) {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Pin != PinChanged || res.Reset != nil || len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0]+res.Warnings[1], "IDENTITY RESET") {
				t.Fatalf("%+v", res)
			}
			st, _ := c.State()
			if ct := st.Contacts["alice"]; ct.IK != nik || ct.Verified || ct.Version != res.Version {
				t.Fatalf("pin %+v", ct)
			}
		})
	}
}

// TestClientPinnedKeyNotInHistory: a key pinned by hand that the account
// never had is not replaced by whatever the directory serves.
func TestClientPinnedKeyNotInHistory(t *testing.T) {
	d := world(t)
	c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
	if err := c.Pin("alice", [32]byte{9}, false); err != nil {
		t.Fatal(err)
	}
	_, err := c.Lookup(context.Background(), "alice")
	wantErr(t, err, ErrIdentityChanged)
}

func TestContactVersionRoundTrip(t *testing.T) {
	st := &ClientState{}
	if err := st.pinAt("bob", [32]byte{1}, true, 7, 0, t0); err != nil {
		t.Fatal(err)
	}
	b, err := st.Marshal()
	if err != nil || !strings.Contains(string(b), `"version": 7`) {
		t.Fatalf("%v\n%s", err, b)
	}
	st2, err := ParseClientState(b)
	if err != nil || st2.Contacts["bob"].Version != 7 {
		t.Fatalf("%v %+v", err, st2.Contacts["bob"])
	}
	// Re-pinning the same key by hand keeps the version; another key does not.
	st2.Pin("bob", [32]byte{1}, false, t0)
	if st2.Contacts["bob"].Version != 7 {
		t.Fatal("version dropped")
	}
	st2.Pin("bob", [32]byte{2}, true, t0)
	if st2.Contacts["bob"].Version != 0 {
		t.Fatal("version kept for another key")
	}
}

// countingVerifier is a note.Verifier that counts the signatures it checks.
type countingVerifier struct {
	note.Verifier
	n atomic.Int64
}

func (v *countingVerifier) Verify(msg, sig []byte) bool {
	v.n.Add(1)
	return v.Verifier.Verify(msg, sig)
}

// TestLookupNewContactVerifiesOnce: a client looks up a contact it never
// saw, whose account is at v2 (a second device added). The lookup verifies
// v2, and the signing key generation rule (checkGenerations) fetches and
// verifies the history from v1 under the same checkpoint. The checkpoint
// note is verified once (the history's is the lookup's, from the cache),
// and v2's state, which the lookup verified, is not verified again in the
// history. A lookup checks 2 + n signatures per state (the lookup rule,
// devices.VerifyAccountStateForLookup): 4 for v2 in the lookup (signing
// key cert, state, each device's back-signature; not the certs' account
// signing key signatures, which v2's signature covers); for v1's create
// only v1's own signature (its signing key cert and its device's
// back-signature are v2's, held by the lookup memo); none for the
// transition to v2 (its link, version, generation and revocation rules are
// checked).
func TestLookupNewContactVerifiesOnce(t *testing.T) {
	d := newTestDir(t)
	d.publish(d.create("carol"))
	d.publish(d.addDevice("carol", "carol-laptop"))
	logKey := &countingVerifier{Verifier: d.trust.Log}
	d.trust.Log = logKey
	c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
	sigs := devices.SignaturesVerified()
	res, err := c.Lookup(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || len(res.State.Devices) != 2 || res.Pin != PinNew {
		t.Fatalf("lookup: v%d, %d devices, pin %v", res.Version, len(res.State.Devices), res.Pin)
	}
	if n := logKey.n.Load(); n != 1 {
		t.Errorf("the log signature of the checkpoint was verified %d times, want 1", n)
	}
	// v1 carries v2's signing key cert and first device cert: the history
	// verifies only v1's own signature (devices.NewLookupMemo).
	if n := devices.SignaturesVerified() - sigs; n != 5 {
		t.Errorf("%d account signatures verified, want 5 (2 + 2 devices in the lookup + v1's state signature)", n)
	}

	// Again, as a chat client does: the client's known size and the held
	// checkpoint come from the cache, and so do carol's VRF proof and
	// state; nothing is signature-checked.
	logKey.n.Store(0)
	sigs = devices.SignaturesVerified()
	again, err := c.Lookup(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Held || again.Pin != PinMatch || again.Version != 2 {
		t.Fatalf("second lookup: held %v, pin %v, v%d", again.Held, again.Pin, again.Version)
	}
	if n := logKey.n.Load(); n != 0 {
		t.Errorf("second lookup: the log signature was verified %d times, want 0", n)
	}
	if n := devices.SignaturesVerified() - sigs; n != 0 {
		t.Errorf("second lookup: %d account signatures verified, want 0", n)
	}
}
