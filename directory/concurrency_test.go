package directory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
)

// TestConcurrentUpdates runs creates, chained updates and lookups from
// many goroutines (meant for -race) and checks every final state.
func TestConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(c *Config) { c.MaxBatch = 7 })
	trust := trustOf(t, s)
	const accounts, versions = 12, 3
	var wg sync.WaitGroup
	errs := make(chan error, accounts*4)
	for i := range accounts {
		wg.Add(2)
		go func() {
			defer wg.Done()
			a := newTestAccount(t, fmt.Sprintf("user%d", i))
			if _, err := s.Update(ctx, a.bytes(t)); err != nil {
				errs <- err
				return
			}
			for v := range versions - 1 {
				next := a.addDevice(t, fmt.Sprintf("d%d", v))
				b, _ := next.MarshalBinary()
				if _, err := s.Update(ctx, b); err != nil {
					errs <- err
					return
				}
				a.state = next
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				b, err := s.Lookup(ctx, fmt.Sprintf("user%d", i), 0)
				if err != nil {
					errs <- err
					return
				}
				if _, err := verifyLookup(trust, fmt.Sprintf("user%d", i), b, 0, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Two racing updates of one account: exactly one wins, the other is
	// rejected (CONCURRENT_UPDATE, or VERSION_NOT_NEXT if it validated late).
	z := newTestAccount(t, "zed")
	if _, err := s.Update(ctx, z.bytes(t)); err != nil {
		t.Fatal(err)
	}
	n1, n2 := z.addDevice(t, "x"), z.addDevice(t, "y")
	var ok, rejected int
	var mu sync.Mutex
	for _, n := range [][]byte{mustMarshal(t, n1), mustMarshal(t, n2)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			switch apierr.Reason(err) {
			case "":
				if err == nil {
					ok++
				}
			case apierr.ConcurrentUpdate, apierr.VersionNotNext, apierr.PrevHashMismatch:
				rejected++
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok != 1 || rejected != 1 {
		t.Fatalf("racing updates: %d accepted, %d rejected", ok, rejected)
	}
	for i := range accounts {
		if v := mustLookup(t, s.Source(), trust, fmt.Sprintf("user%d", i)); v.version != versions {
			t.Fatalf("user%d at version %d", i, v.version)
		}
	}
	h, err := s.History(ctx, "user3", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, versions)
}

// TestChainInOneEpoch: version n+2 submitted while n+1 waits for its epoch
// is validated against n+1 and lands in the same epoch.
func TestChainInOneEpoch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(c *Config) { c.EpochInterval = 300 * time.Millisecond })
	trust := trustOf(t, s)
	a := newTestAccount(t, "ivy")
	if _, err := s.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	v2 := a.addDevice(t, "two")
	a.state = v2
	v3 := a.addDevice(t, "three")
	first := make(chan *UpdateResult, 1)
	go func() {
		r, err := s.Update(ctx, mustMarshal(t, v2))
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r3, err := s.Update(ctx, mustMarshal(t, v3))
	if err != nil {
		t.Fatal(err)
	}
	r2 := <-first
	if r2 == nil || r2.Epoch != r3.Epoch || r3.LogIndex != r2.LogIndex+1 {
		t.Fatalf("v2 %+v, v3 %+v: want the same epoch, consecutive leaves", r2, r3)
	}
	if v := mustLookup(t, s.Source(), trust, "ivy"); v.version != 3 {
		t.Fatalf("version %d", v.version)
	}
}

// TestQueueFull: with the queue full, Update fails fast with
// ResourceExhausted; Close fails the queued ones with Unavailable.
func TestQueueFull(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(c *Config) { c.EpochInterval = time.Hour; c.QueueSize = 2 })
	errs := make(chan error, 2)
	for i := range 2 {
		a := newTestAccount(t, fmt.Sprintf("q%d", i))
		go func() {
			_, err := s.Update(ctx, a.bytes(t))
			errs <- err
		}()
	}
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, err := s.Update(ctx, newTestAccount(t, "q2").bytes(t))
	if apierr.Code(err) != codes.ResourceExhausted || apierr.Reason(err) != apierr.QueueFull {
		t.Fatalf("update with a full queue: %v", err)
	}
	s.Close()
	for range 2 {
		if err := <-errs; apierr.Code(err) != codes.Unavailable {
			t.Fatalf("queued update at Close: %v", err)
		}
	}
	if _, err := s.Update(ctx, newTestAccount(t, "q3").bytes(t)); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("update after Close: %v", err)
	}
	if _, err := s.Lookup(ctx, "q3", 0); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("lookup after Close: %v", err)
	}
}

// TestEmptyEpochs: with nothing queued an empty epoch is still cut every
// EmptyEpochInterval (fresh EpochRecord timestamps), and not more often.
func TestEmptyEpochs(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), func(c *Config) { c.EpochInterval = 5 * time.Millisecond; c.EmptyEpochInterval = 40 * time.Millisecond })
	trust := trustOf(t, s)
	cp, _ := s.Checkpoint(ctx)
	c0, err := trust.OpenCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cp, _ = s.Checkpoint(ctx)
	c1, err := trust.OpenCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	// Each empty epoch is one EpochRecord leaf: at most 300/40 of them.
	if grown := c1.Size - c0.Size; grown < 1 || grown > 8 {
		t.Fatalf("log grew by %d leaves in 300ms of idle with 40ms empty epochs", grown)
	}
	if v := mustLookup(t, s.Source(), trust, "idle"); v.found || v.epoch.Epoch == 0 {
		t.Fatalf("after idle epochs: epoch %d", v.epoch.Epoch)
	}
}
