package directory

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/keyline/keyline/directory/apierr"
	pb "github.com/keyline/keyline/proto"
)

// FuzzRequests decodes arbitrary bytes as each request message and calls
// its handler: nothing may panic, and every error must be an API error
// with a reason (never Internal).
func FuzzRequests(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(Config{DataDir: dir, EpochInterval: 5 * time.Millisecond, NoSync: true, AdminToken: "tok"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	a := newTestAccount(f, "fuzz")
	if _, err := s.Update(context.Background(), a.bytes(f)); err != nil {
		f.Fatal(err)
	}
	next := a.addDevice(f, "two")
	seed := func(kind byte, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, b)
	}
	seed(0, &pb.UpdateRequest{AccountState: mustMarshal(f, next)[:100]})
	seed(0, &pb.UpdateRequest{AccountState: a.bytes(f)})
	seed(1, &pb.ResetRequest{UserId: "fuzz", AccountState: mustMarshal(f, next), Reason: "lost"})
	seed(2, &pb.LookupRequest{UserId: "fuzz", KnownTreeSize: 3})
	seed(3, &pb.HistoryRequest{UserId: "fuzz", FromVersion: 1})
	seed(4, &pb.GetConsistencyProofRequest{OldSize: 1, NewSize: 2})
	seed(5, &pb.GetEntriesRequest{Start: 0, End: 2000})
	g := &grpcService{s: s}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer tok"))
		var err error
		switch kind % 7 {
		case 0:
			var r pb.UpdateRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.Update(ctx, &r)
		case 1:
			var r pb.ResetRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.Reset(ctx, &r)
		case 2:
			var r pb.LookupRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.Lookup(ctx, &r)
		case 3:
			var r pb.HistoryRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.History(ctx, &r)
		case 4:
			var r pb.GetConsistencyProofRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.GetConsistencyProof(ctx, &r)
		case 5:
			var r pb.GetEntriesRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = g.GetEntries(ctx, &r)
		case 6:
			_, err = g.GetCheckpoint(ctx, &pb.GetCheckpointRequest{})
		}
		if err != nil && ctx.Err() == nil {
			if r := reasonOf(err); r == "" || r == "INTERNAL" {
				t.Fatalf("kind %d: error without a reason or internal: %v", kind%7, err)
			}
		}
	})
}

func reasonOf(err error) string { return apierr.Reason(err) }
