package cli

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
)

// TestOwnStateChecksCertSignatures: a malicious directory serves alice a
// new version, signed by her account signing key, that adds a device whose
// cert's own signature by that key is corrupted. Bob's lookup accepts it
// (a lookup client does not verify a cert signature the state's signature
// covers: docs/protocol.md §7.1.7); alice's own device flows check every
// signature and refuse it.
func TestOwnStateChecksCertSignatures(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}
	w.createAccount("alice-laptop", "alice", "laptop")
	w.createAccount("bob-pc", "bob", "pc")
	w.ok("alice-laptop", "", "device", "list") // the honest state passes

	evilAddr := serveForgedState(t, w, srvDir, addr, filepath.Join(root, "alice-laptop"), "alice", func(latest *devices.AccountState, ask *devices.AccountSigningKey) *devices.AccountState {
		h, _ := latest.Hash()
		st := *latest
		st.Version, st.PrevHash, st.Timestamp = latest.Version+1, h, latest.Timestamp.Add(time.Second)
		dk, _ := devices.NewDeviceKey(rand.Reader)
		c, err := dk.NewCert("odd", latest.IdentityKey, st.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		if err := ask.IssueCert(latest.IdentityKey, c); err != nil {
			t.Fatal(err)
		}
		c.Signature[3] ^= 1
		st.Devices = append(slices.Clone(latest.Devices), c)
		slices.SortFunc(st.Devices, func(a, b *devices.DeviceCert) int { return strings.Compare(a.ID.String(), b.ID.String()) })
		if err := st.Sign(ask); err != nil {
			t.Fatal(err)
		}
		return &st
	})
	if r := w.runAt(evilAddr, "bob-pc", "", "lookup", "alice"); r.code != 0 {
		t.Fatalf("bob's lookup: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	r := w.runAt(evilAddr, "alice-laptop", "", "device", "list")
	if r.code != ExitVerification || !strings.Contains(r.err, "does not verify") || !strings.Contains(r.err, "account signing key signature") {
		t.Fatalf("alice's device list: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
}
