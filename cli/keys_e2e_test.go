package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/adversary"
	"github.com/keyline/keyline/directory/client"
	klog "github.com/keyline/keyline/log"
	pb "github.com/keyline/keyline/proto"
	"github.com/keyline/keyline/verifier"
)

// request runs `device request USER` on dev and returns the pairing code
// and fingerprint it prints.
func (w *world) request(dev, user, name string) (code, fp string) {
	w.t.Helper()
	r := w.ok(dev, "", "device", "request", user, "--name", name)
	code = regexp.MustCompile(`KL2-[A-Z0-9-]+`).FindString(r.out)
	m := regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(r.out)
	if code == "" || m == nil {
		w.t.Fatalf("device request printed no code or fingerprint:\n%s", r.out)
	}
	return code, strings.TrimSpace(m[1])
}

// TestStolenLaptopEndToEnd is issue 9's end-to-end story on the command
// line: alice creates her account on her laptop, approves her phone as
// trusted and her tablet as untrusted, loses her laptop and recovers on a
// new device with the paper key. The old laptop's next approval fails, a
// state signed with its key and served by a malicious directory is refused
// by bob's lookup, and bob's verified safety number never changes.
func TestStolenLaptopEndToEnd(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}

	paper := w.createAccount("alice-laptop", "alice", "laptop")
	// The phone joins as a trusted device: the approval hands it the
	// account signing key, encrypted to the phone.
	code, fp := w.request("alice-phone", "alice", "phone")
	r := w.ok("alice-laptop", "", "device", "approve", code, "--fingerprint", fp, "--trusted")
	handover := regexp.MustCompile(`KLH1-[A-Z0-9-]+`).FindString(r.out)
	if handover == "" {
		t.Fatalf("approve --trusted printed no handover code:\n%s", r.out)
	}
	if r := w.run("alice-tablet-x", "", "device", "finish", "--signing-key", handover); r.code == 0 {
		t.Fatalf("another data dir accepted the phone's handover")
	}
	r = w.ok("alice-phone", "", "device", "finish", "--signing-key", handover)
	if !strings.Contains(r.out, "can approve and revoke") {
		t.Fatalf("finish --signing-key:\n%s", r.out)
	}
	// The tablet joins untrusted, approved by the (trusted) phone.
	code, fp = w.request("alice-tablet", "alice", "tablet")
	w.ok("alice-phone", "", "device", "approve", code, "--fingerprint", fp)
	w.ok("alice-tablet", "", "device", "finish")
	var list struct {
		Devices []deviceRow `json:"devices"`
	}
	w.okJSON("alice-tablet", &list, "device", "list")
	trusted := map[string]bool{}
	for _, d := range list.Devices {
		trusted[d.name()] = d.Trusted
	}
	if !trusted["laptop"] || !trusted["phone"] || trusted["tablet"] || len(trusted) != 3 {
		t.Fatalf("device list trusted: %v", trusted)
	}
	if r := w.run("alice-tablet", "", "device", "revoke", "phone", "-y"); r.code != ExitError || !strings.Contains(r.err, "not trusted") {
		t.Fatalf("revoke from the untrusted tablet: exit %d\n%s", r.code, r.err)
	}

	// Bob verifies alice's safety number.
	w.createAccount("bob-pc", "bob", "pc")
	var sn safetyOutput
	w.okJSON("bob-pc", &sn, "safety-number", "alice")
	w.ok("bob-pc", "", "verify", "alice", sn.SafetyNumber)
	bobSees := func(server string) lookupJSON {
		t.Helper()
		var l lookupJSON
		r := w.runAt(server, "bob-pc", "", "--json", "lookup", "alice")
		if r.code != 0 {
			t.Fatalf("bob's lookup: exit %d\n%s%s", r.code, r.out, r.err)
		}
		if err := json.Unmarshal([]byte(r.out), &l); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(l.Pin, "verified") {
			t.Fatalf("bob's pin of alice is %q", l.Pin)
		}
		return l
	}
	bobSees(addr)

	// The laptop is stolen. Alice recovers on a new device with the paper
	// key: signing key generation 2, every other device revoked.
	r = w.ok("alice-new", paper+"\n", "account", "recover", "alice", "--name", "new-laptop")
	if !strings.Contains(r.out, "generation 2") || !strings.Contains(r.out, "safety numbers for you are unchanged") {
		t.Fatalf("recover:\n%s", r.out)
	}
	if l := bobSees(addr); !equal(activeNames(l), []string{"new-laptop"}) {
		t.Fatalf("after recovery bob sees %v", activeNames(l))
	}

	// The old laptop's next approval fails: its key was rotated out.
	code, fp = w.request("evil-dev", "alice", "evil")
	r = w.run("alice-laptop", "", "device", "approve", code, "--fingerprint", fp)
	if r.code != ExitRejected || !strings.Contains(r.err, "rotated out") {
		t.Fatalf("approve on the stolen laptop: exit %d\n%s%s", r.code, r.out, r.err)
	}

	// The thief (with the directory's help) serves a state signed with
	// the laptop's key: bob's lookup refuses it.
	evilAddr := serveStaleState(t, w, srvDir, addr, filepath.Join(root, "alice-laptop"), "alice")
	r = w.runAt(evilAddr, "bob-pc", "", "lookup", "alice")
	if r.code != ExitVerification || !strings.Contains(r.err, "stale account signing key") || strings.Contains(r.out, "ok ") {
		t.Fatalf("forged state signed by the stolen laptop: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}

	// Bob's verified safety number never changed.
	var after safetyOutput
	w.okJSON("bob-pc", &after, "safety-number", "alice")
	if after.SafetyNumber != sn.SafetyNumber {
		t.Fatalf("bob's safety number for alice changed: %q -> %q", sn.SafetyNumber, after.SafetyNumber)
	}
	bobSees(addr)

	// A directory reset of alice is pending: bob still sees her keys with a
	// notice, and alice cancels it from her (trusted) new device.
	forgeReset(t, addr, srvDir, "alice")
	if l := bobSees(addr); l.ResetPending == nil {
		t.Fatalf("bob's lookup during the window shows no pending reset")
	}
	r = w.ok("alice-new", "", "--json", "account", "cancel-reset")
	loadSchema(t).check(t, "account cancel-reset", r.out)
	if !strings.Contains(r.out, `"cancelled": true`) {
		t.Fatalf("cancel-reset:\n%s", r.out)
	}
	time.Sleep(testResetWindow + time.Second)
	touchServer(t, addr)
	if l := bobSees(addr); l.ResetPending != nil || l.Reset {
		t.Fatalf("the cancelled reset took effect: %+v", l)
	}
	w.okJSON("bob-pc", &after, "safety-number", "alice")
	if after.SafetyNumber != sn.SafetyNumber {
		t.Fatalf("bob's safety number for alice changed after the cancelled reset")
	}
}

// serveStaleState starts a malicious directory (the honest one's keys and
// log, served by an adversary.Forgery over gRPC) whose latest version of
// user is a state signed with the account signing key held in the keystore
// of laptopDir, appended after the honest latest version. It returns its
// address.
func serveStaleState(t *testing.T, w *world, srvDir, addr, laptopDir, user string) string {
	return serveForgedState(t, w, srvDir, addr, laptopDir, user, func(latest *devices.AccountState, ask *devices.AccountSigningKey) *devices.AccountState {
		t.Helper()
		// Everything the laptop can sign: the current devices re-signed with
		// its (rotated-out) key, plus the thief's device.
		rk := latest.IdentityKey
		h, _ := latest.Hash()
		st := &devices.AccountState{UserID: user, Version: latest.Version + 1, PrevHash: h, IdentityKey: rk, SigningKey: ask.Cert,
			Revocations: latest.Revocations, Timestamp: latest.Timestamp.Add(time.Second)}
		for _, d := range latest.Devices {
			c := *d
			if err := ask.IssueCert(rk, &c); err != nil {
				t.Fatal(err)
			}
			st.Devices = append(st.Devices, &c)
		}
		dk, _ := devices.NewDeviceKey(rand.Reader)
		evil, err := dk.NewCert("thief", rk, st.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		if err := ask.IssueCert(rk, evil); err != nil {
			t.Fatal(err)
		}
		st.Devices = append(st.Devices, evil)
		slices.SortFunc(st.Devices, func(a, b *devices.DeviceCert) int { return strings.Compare(a.ID.String(), b.ID.String()) })
		if err := st.Sign(ask); err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// serveForgedState starts a malicious directory (the honest one's keys and
// log, served by an adversary.Forgery over gRPC) whose latest version of
// user is build's state (given the honest latest state and the account
// signing key held in the keystore of laptopDir), appended after the
// honest latest version. It returns its address.
func serveForgedState(t *testing.T, w *world, srvDir, addr, laptopDir, user string, build func(latest *devices.AccountState, ask *devices.AccountSigningKey) *devices.AccountState) string {
	t.Helper()
	ctx := context.Background()
	ks, err := devices.LoadKeystore(filepath.Join(laptopDir, keystoreFile), []byte(testEnv("KEYLINE_PASSPHRASE")))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Signing == nil {
		t.Fatal("the laptop holds no signing key")
	}
	keys, err := adversary.LoadKeys(srvDir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	trust, err := verifier.LoadTrust(w.trust)
	if err != nil {
		t.Fatal(err)
	}
	cpNote, err := src.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := trust.OpenCheckpoint(cpNote)
	if err != nil {
		t.Fatal(err)
	}
	f, err := adversary.NewForgery(ctx, keys, t.TempDir(), src, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b, err := src.Lookup(ctx, user, 0)
	if err != nil {
		t.Fatal(err)
	}
	up, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := devices.ParseAccountState(up.Payload)
	if err != nil {
		t.Fatal(err)
	}
	st := build(latest, ks.Signing)
	payload, _ := st.MarshalBinary()
	leaf, err := (&klog.AccountUpdate{Index: up.Index, Version: st.Version, PrevHash: klog.EntryHash(b.AccountUpdate), Update: klog.UpdateUpdate, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.AppendUpdate(ctx, leaf, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.CloseEpoch(ctx, adversary.EpochOptions{}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterDirectoryServer(s, &sourceServer{src: f})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// sourceServer serves a verifier.Source (a forged directory) over the
// directory's gRPC API (read-only).
type sourceServer struct {
	pb.UnimplementedDirectoryServer
	src verifier.Source
}

func (s *sourceServer) Lookup(ctx context.Context, r *pb.LookupRequest) (*pb.LookupResponse, error) {
	b, err := s.src.Lookup(ctx, r.GetUserId(), r.GetKnownTreeSize())
	if err != nil {
		return nil, err
	}
	return &pb.LookupResponse{
		Checkpoint: b.Checkpoint, VrfProof: b.VRFProof, MapProof: b.MapProof,
		EpochRecord: b.EpochRecord, EpochRecordInclusion: b.EpochRecordInclusion,
		AccountUpdate: b.AccountUpdate, AccountUpdateIndex: b.AccountUpdateIndex,
		Consistency: b.Consistency,
	}, nil
}

func (s *sourceServer) History(ctx context.Context, r *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	h, err := s.src.History(ctx, r.GetUserId(), r.GetFromVersion())
	if err != nil {
		return nil, err
	}
	resp := &pb.HistoryResponse{Checkpoint: h.Checkpoint, VrfProof: h.VRFProof}
	for _, e := range h.Entries {
		resp.Entries = append(resp.Entries, &pb.HistoryEntry{LogIndex: e.LogIndex, Leaf: e.Leaf, Inclusion: e.Inclusion})
	}
	return resp, nil
}

func (s *sourceServer) GetCheckpoint(ctx context.Context, _ *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	cp, err := s.src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.GetCheckpointResponse{Checkpoint: cp}, nil
}

func (s *sourceServer) GetConsistencyProof(ctx context.Context, r *pb.GetConsistencyProofRequest) (*pb.GetConsistencyProofResponse, error) {
	p, err := s.src.ConsistencyProof(ctx, r.GetOldSize(), r.GetNewSize())
	if err != nil {
		return nil, err
	}
	return &pb.GetConsistencyProofResponse{Proof: p}, nil
}

func (s *sourceServer) GetEntries(ctx context.Context, r *pb.GetEntriesRequest) (*pb.GetEntriesResponse, error) {
	l, err := s.src.Entries(ctx, r.GetStart(), r.GetEnd())
	if err != nil {
		return nil, err
	}
	return &pb.GetEntriesResponse{Leaves: l}, nil
}

// TestPairingRequestExpires: a request is valid for 10 minutes; approving
// it later fails, and running `device request` again renews it (same
// device keys), after which the approval works.
func TestPairingRequestExpires(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}
	w.createAccount("alice-laptop", "alice", "laptop")
	code, fp := w.request("alice-phone", "alice", "phone")

	// The laptop's clock is 11 minutes later: the request has expired.
	late := func(dev string, args ...string) (string, string, error) {
		var out, errb syncBuf
		a := newApp(IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
		a.now = func() time.Time { return time.Now().Add(11 * time.Minute) }
		a.root.SetArgs(append([]string{"--server", addr, "--trust", w.trust, "--data-dir", filepath.Join(root, dev)}, args...))
		err := a.root.ExecuteContext(context.Background())
		return out.String(), errb.String(), err
	}
	if _, _, err := late("alice-laptop", "device", "approve", code, "--fingerprint", fp); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("approving an expired request: %v", err)
	}
	// On the phone, 11 minutes later, the request is renewed.
	out, errs, err := late("alice-phone", "device", "request", "alice", "--name", "phone")
	if err != nil || !strings.Contains(errs, "expired") {
		t.Fatalf("renewing: %v\n%s%s", err, out, errs)
	}
	code2 := regexp.MustCompile(`KL2-[A-Z0-9-]+`).FindString(out)
	fp2 := regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(out)
	if code2 == "" || code2 == code || fp2 == nil {
		t.Fatalf("no new request:\n%s", out)
	}
	if _, _, err := late("alice-laptop", "device", "approve", code2, "--fingerprint", strings.TrimSpace(fp2[1])); err != nil {
		t.Fatalf("approving the renewed request: %v", err)
	}
	w.ok("alice-phone", "", "device", "finish")
}
