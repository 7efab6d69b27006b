package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
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
