package adversary

import (
	"testing"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// TestFaithfulCopies shows that the adversary's tools do not themselves
// break verification: an unmodified Forgery (plus an honest empty epoch)
// and an undiverged Fork verify for clients, monitors and auditors that
// verified the honest directory. So every detection in attacks_test.go is
// caused by the attack, not by the harness.
func TestFaithfulCopies(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	e.publish(alice, e.addDevice(alice, "laptop"))
	e.create("bob")

	cl := e.client(nil)
	if _, err := cl.Lookup(e.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 2, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	a := e.auditor()
	e.auditHonest(a)

	t.Run("fork", func(t *testing.T) {
		fork, err := Fork(e.dir, t.TempDir()+"/fork", e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer fork.Close()
		e.src.ServeOther(fork.Source())
		defer e.src.SetMode(Honest)
		if r, err := cl.Lookup(e.ctx, "alice"); err != nil || r.Version != 2 {
			t.Fatalf("client on the undiverged fork: %v", err)
		}
		if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
			t.Fatalf("monitor on the undiverged fork: %v", err)
		}
		if _, err := a.Run(e.ctx, nil); err != nil {
			t.Fatalf("auditor on the undiverged fork: %v", err)
		}
	})
	t.Run("forgery", func(t *testing.T) {
		f := e.forge(0)
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		for _, uid := range []string{"alice", "bob", "nobody"} {
			if _, err := cl.Lookup(e.ctx, uid); err != nil {
				t.Fatalf("client lookup of %s on the faithful forgery: %v", uid, err)
			}
		}
		if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
			t.Fatalf("monitor on the faithful forgery: %v", err)
		}
		h, err := f.History(e.ctx, "alice", 1)
		if err != nil || len(h.Entries) != 2 {
			t.Fatalf("history: %v", err)
		}
		if _, err := a.Run(e.ctx, nil); err != nil {
			t.Fatalf("auditor on the faithful forgery: %v", err)
		}
	})
}
