package loadgen_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/loadgen"
)

func TestRun(t *testing.T) {
	s, err := directory.Open(directory.Config{DataDir: t.TempDir(), EpochInterval: 20 * time.Millisecond, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	trust, err := s.Trust().Trust()
	if err != nil {
		t.Fatal(err)
	}
	var progress int
	o := loadgen.Options{Addr: lis.Addr().String(), Accounts: 40, Concurrency: 4, Duration: 300 * time.Millisecond, Trust: trust,
		Progress: func(done, total int) { progress = done }}
	r, err := loadgen.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Created != 40 || progress != 40 || r.KeygenTime <= 0 || r.CreateTime <= 0 || r.UpdatesPerSec <= 0 || r.Lookups == 0 || r.Verified != r.Lookups || r.ProofBytes == 0 || r.PayloadBytes == 0 {
		t.Fatalf("report %v", r)
	}
	// A second run finds the accounts and creates none.
	r, err = loadgen.Run(context.Background(), o)
	if err != nil || r.Created != 0 {
		t.Fatalf("second run: %v, %v", r, err)
	}
	t.Log(r)
}
