package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
)

// The directory's OutOfRange answer to a lookup means its log is smaller
// than the checkpoint this client verified before: a verification failure
// (exit 3), not a rejection (exit 5).
func TestClassifyRollback(t *testing.T) {
	s := &session{a: &app{server: "127.0.0.1:7411", dataDir: t.TempDir()}}
	err := s.classify("lookup alice", fmt.Errorf("verifier: lookup alice: %w",
		apierr.New(codes.OutOfRange, apierr.OutOfRange, "known tree size 10 is larger than the published checkpoint's 5")))
	if exitCode(err) != ExitVerification || asError(err).Kind != KindVerification ||
		!strings.Contains(err.Error(), "rollback or fork") || !strings.Contains(err.Error(), "known tree size 10") {
		t.Fatalf("got exit %d: %v", exitCode(err), err)
	}
	// Other statuses keep their classes.
	err = s.classify("lookup alice", apierr.New(codes.InvalidArgument, apierr.OutOfRange, "x"))
	if exitCode(err) != ExitRejected {
		t.Fatalf("InvalidArgument: exit %d: %v", exitCode(err), err)
	}
}

// A directory rolled back to an older copy of its data dir (or a fork with
// the same keys that is behind): a client that verified the bigger log
// refuses it with exit 3 and keeps its state.
func TestLookupRollbackIsVerificationFailure(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	stop()
	oldDir := filepath.Join(root, "old")
	copyDir(t, srvDir, oldDir)

	addr, stop = startServer(t, srvDir)
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}
	w.createAccount("alice-laptop", "alice", "laptop")
	var l lookupOutput
	w.okJSON("bob", &l, "lookup", "alice")
	stop()

	oldAddr, stopOld := startServer(t, oldDir)
	defer stopOld()
	statePath := filepath.Join(root, "bob", clientStateFile)
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	r := w.runAt(oldAddr, "bob", "", "lookup", "alice")
	if r.code != ExitVerification || strings.Contains(r.out, "ok ") ||
		!strings.Contains(r.err, "the directory's log is smaller than the checkpoint you verified before: rollback or fork") {
		t.Fatalf("lookup against the rolled-back directory (bob verified size %d): exit %d\nstdout:\n%s\nstderr:\n%s", l.CheckpointSize, r.code, r.out, r.err)
	}
	r = w.runAt(oldAddr, "bob", "", "--json", "lookup", "alice")
	var je jsonError
	if r.code != ExitVerification || json.Unmarshal([]byte(r.err), &je) != nil || je.Kind != KindVerification {
		t.Fatalf("--json: exit %d, stderr %s", r.code, r.err)
	}
	after, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("the failed lookup changed the client state")
	}
}
