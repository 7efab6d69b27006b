// Package loadgen drives a Keyline directory over gRPC: it bulk-creates
// synthetic accounts and then measures lookups (throughput, latency, proof
// size), optionally verifying every proof. `keyline bench` exposes it.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// Options configures Run.
type Options struct {
	Addr        string        // directory gRPC address host:port
	Accounts    int           // accounts to create (existing ones are skipped); default 1000
	Concurrency int           // concurrent lookups; default 16
	Duration    time.Duration // lookup phase length; default 10s
	Prefix      string        // user ids are "<Prefix>-<i>"; default "loadgen"
	// NoCreate skips the create phase: accounts <Prefix>-<i>, i < Accounts,
	// exist already (e.g. a benchmark fixture built in bulk).
	NoCreate bool
	// Lookups, if positive, ends the lookup phase after that many lookups
	// (or Duration, whichever comes first).
	Lookups int
	// Zipf, if above 1, draws the looked-up accounts from a Zipf
	// distribution with this exponent over the account numbers (account
	// i's probability falls as 1/(i+1)^Zipf: a few hot accounts, like chat
	// contacts) instead of uniformly.
	Zipf float64
	// Trust, if set, verifies every lookup bundle (checkpoint, VRF, map and
	// inclusion proofs, AccountState signatures); a failure ends Run with
	// an error. Verification costs client CPU and lowers the rate.
	Trust *verifier.Trust
	// Progress, if set, is called as accounts are created (done of total).
	Progress func(done, total int)
	// ServerCPU, if set, returns the directory process's cumulative CPU
	// time (ProcessCPU), so Run can report the server's CPU per operation
	// apart from the load generator's own (key derivation, signing,
	// verification).
	ServerCPU func() (time.Duration, error)
	// CreateConcurrency is the number of creates in flight (default 256).
	// A create is acknowledged when its epoch is published, so the create
	// rate is at most CreateConcurrency / (epoch interval / 2 + epoch
	// time): a fast directory needs more than the default, and a server
	// limit on requests in progress per client address
	// (Limits.MaxStreamsPerPeer, default 256) above it.
	CreateConcurrency int
}

// Report is what Run measured.
type Report struct {
	Accounts int // accounts in the directory under Prefix (created or existing)
	Created  int // accounts created by this run
	// KeygenTime is the wall time spent deriving the accounts' keys and
	// signing their create requests, on all cores, before each timed
	// submission; it is not part of CreateTime.
	KeygenTime time.Duration
	// CreateTime is the wall time of submitting the pre-generated create
	// requests and waiting for their epochs (the timed create phase).
	CreateTime    time.Duration
	UpdatesPerSec float64 // created accounts per second of CreateTime (each a full signed create)
	Lookups       int     // lookups completed in the lookup phase
	LookupsPerSec float64
	P50, P99      time.Duration // lookup latency
	// ProofBytes is the mean size of a lookup bundle without the
	// AccountUpdate payload (checkpoint, VRF proof, map proof, EpochRecord,
	// inclusion proofs, AccountUpdate header); PayloadBytes the mean payload
	// (the signed AccountState).
	ProofBytes   float64
	PayloadBytes float64
	Verified     int // bundles verified (with Options.Trust)

	// CPU time per operation of the server (with Options.ServerCPU; zero
	// otherwise) and of this load generator, per created account and per
	// lookup, during the timed phases only. ClientCPUPerKeygen is this load
	// generator's CPU per create request generated (key derivation and
	// signing, outside the timed phase).
	ServerCPUPerCreate, ServerCPUPerLookup time.Duration
	ClientCPUPerCreate, ClientCPUPerLookup time.Duration
	ClientCPUPerKeygen                     time.Duration
}

func (r *Report) String() string {
	return fmt.Sprintf("accounts %d (created %d in %v, %.0f creates/s; keys generated in %v); lookups %d: %.0f/s, p50 %v, p99 %v; proof %.0f B + payload %.0f B per lookup; verified %d",
		r.Accounts, r.Created, r.CreateTime.Round(time.Millisecond), r.UpdatesPerSec, r.KeygenTime.Round(time.Millisecond), r.Lookups, r.LookupsPerSec, r.P50, r.P99, r.ProofBytes, r.PayloadBytes, r.Verified)
}

// cpuSample reads the server's (with Options.ServerCPU) and this
// process's cumulative CPU time.
type cpuSample func() (server, self time.Duration, err error)

// Run creates the accounts and measures lookups.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Accounts <= 0 {
		o.Accounts = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.CreateConcurrency <= 0 {
		o.CreateConcurrency = 256
	}
	if o.Prefix == "" {
		o.Prefix = "loadgen"
	}
	c, err := client.Dial(o.Addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r := &Report{Accounts: o.Accounts}
	sample := func() (server, self time.Duration, err error) {
		if o.ServerCPU != nil {
			if server, err = o.ServerCPU(); err != nil {
				return 0, 0, err
			}
		}
		return server, SelfCPU(), nil
	}
	if !o.NoCreate {
		if err := create(ctx, c, o, r, sample); err != nil {
			return r, err
		}
	}
	s1, c1, err := sample()
	if err != nil {
		return r, err
	}
	if err := lookups(ctx, c, o, r); err != nil {
		return r, err
	}
	s2, c2, err := sample()
	if err != nil {
		return r, err
	}
	if r.Lookups > 0 {
		r.ClientCPUPerLookup = (c2 - c1) / time.Duration(r.Lookups)
		if o.ServerCPU != nil {
			r.ServerCPUPerLookup = (s2 - s1) / time.Duration(r.Lookups)
		}
	}
	return r, nil
}

// createChunk is how many create requests are generated before each timed
// submission: it bounds the memory they take (about 0.5 KB each).
const createChunk = 50000

// create creates the accounts chunk by chunk: it generates a chunk's
// signed create requests on all cores (untimed), then submits them from
// CreateConcurrency workers (timed, with the CPU of both sides
// sampled around it).
func create(ctx context.Context, c *client.Client, o Options, r *Report, sample cpuSample) error {
	var serverCPU, submitCPU, keygenCPU time.Duration
	created, done := 0, 0
	for first := 0; first < o.Accounts; first += createChunk {
		k0, t0 := SelfCPU(), time.Now()
		reqs, err := GenerateCreates(ctx, o.Prefix, first, min(first+createChunk, o.Accounts))
		r.KeygenTime += time.Since(t0)
		keygenCPU += SelfCPU() - k0
		if err != nil {
			return err
		}
		s0, c0, err := sample()
		if err != nil {
			return err
		}
		t1 := time.Now()
		n, err := submitCreates(ctx, c, o, first, reqs, done)
		r.CreateTime += time.Since(t1)
		s1, c1, serr := sample()
		if serr != nil {
			return serr
		}
		serverCPU, submitCPU = serverCPU+s1-s0, submitCPU+c1-c0
		created, done = created+n, done+len(reqs)
		if err != nil {
			r.Created = created
			return err
		}
	}
	r.Created = created
	if created > 0 {
		r.UpdatesPerSec = float64(created) / r.CreateTime.Seconds()
		r.ClientCPUPerCreate = submitCPU / time.Duration(created)
		if o.ServerCPU != nil {
			r.ServerCPUPerCreate = serverCPU / time.Duration(created)
		}
	}
	if o.Accounts > 0 {
		r.ClientCPUPerKeygen = keygenCPU / time.Duration(o.Accounts)
	}
	return nil
}

// GenerateCreates returns the signed version-1 AccountStates (encoded) of
// synthetic accounts first..end-1 under prefix, generated on all cores.
func GenerateCreates(ctx context.Context, prefix string, first, end int) ([][]byte, error) {
	reqs := make([][]byte, end-first)
	now := time.Now()
	err := ForEach(ctx, runtime.GOMAXPROCS(0), len(reqs), func(i int) error {
		a, err := NewAccount(prefix, first+i)
		var st *devices.AccountState
		if err == nil {
			st, err = a.Create(now)
		}
		if err == nil {
			reqs[i], err = st.MarshalBinary()
		}
		if err != nil {
			return fmt.Errorf("generating account %d: %w", first+i, err)
		}
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return reqs, err
}

// ForEach calls f(i) for every i in [0, n) on workers goroutines, each
// taking the next index in turn. Once f has returned an error, or ctx is
// done, no further index is handed out; ForEach waits for the calls in
// progress and returns f's first error (nil if there was none: ctx's
// error is the caller's to check).
func ForEach(ctx context.Context, workers, n int, f func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err; failed.Store(true) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// submitCreates submits reqs (accounts first, first+1, ...) and returns
// how many were created; accounts that already exist are skipped. done is
// the number of accounts handled before, for Options.Progress.
func submitCreates(ctx context.Context, c *client.Client, o Options, first int, reqs [][]byte, done int) (int, error) {
	var handled, created atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := ForEach(ctx, o.CreateConcurrency, len(reqs), func(i int) error {
		err := submitCreate(ctx, c, reqs[i])
		if err == nil {
			created.Add(1)
		} else if apierr.Reason(err) != apierr.AccountExists {
			cancel() // the submissions in flight end too
			return fmt.Errorf("creating account %d: %w", first+i, err)
		}
		d := done + int(handled.Add(1))
		if o.Progress != nil && (d%1000 == 0 || d == o.Accounts) {
			o.Progress(d, o.Accounts)
		}
		return nil
	})
	return int(created.Load()), err
}

// submitCreate sends one create request, retrying (up to 100 times, after
// 10-50 ms) while the directory refuses it with ResourceExhausted: queue
// full, too many requests in progress, memory budget or rate limit.
func submitCreate(ctx context.Context, c *client.Client, req []byte) error {
	for attempt := 0; ; attempt++ {
		_, err := c.Update(ctx, req)
		if apierr.Code(err) == codes.ResourceExhausted && attempt < 100 {
			time.Sleep(time.Duration(10+rand.IntN(40)) * time.Millisecond)
			continue
		}
		return err
	}
}

func lookups(ctx context.Context, c *client.Client, o Options, r *Report) error {
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var proofBytes, payloadBytes, verified int64
	var firstErr error
	var wg sync.WaitGroup
	var issued atomic.Int64
	// With a trust file, workers verify like long-lived clients
	// (verifier.Client) that pin nothing: verifier.VerifyLookup with a
	// shared verifier.Cache, each worker holding the last checkpoint it
	// verified (and its EpochRecord) in its own state.
	cache := verifier.NewCache(0)
	start := time.Now()
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var my []time.Duration
			var pb, pl, ver int64
			pick := func() int { return rand.IntN(o.Accounts) }
			if o.Zipf > 1 {
				z := mrand.NewZipf(mrand.New(mrand.NewSource(int64(w)+1)), o.Zipf, 1, uint64(o.Accounts-1))
				pick = func() int { return int(z.Uint64()) }
			}
			// Like a real client, a worker sends the size of the last
			// checkpoint it saw, and gets held-checkpoint bundles while
			// that is the served one.
			st := &verifier.ClientState{}
			var known uint64
			for ctx.Err() == nil {
				if o.Lookups > 0 && issued.Add(1) > int64(o.Lookups) {
					break
				}
				uid := fmt.Sprintf("%s-%d", o.Prefix, pick())
				t0 := time.Now()
				b, err := c.Lookup(ctx, uid, known)
				if err != nil {
					if ctx.Err() != nil || apierr.Code(err) == codes.DeadlineExceeded || apierr.Code(err) == codes.Canceled {
						break // the lookup phase ended (the server may see the deadline first)
					}
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					cancel()
					break
				}
				my = append(my, time.Since(t0))
				p, n := BundleSize(b)
				pb, pl = pb+int64(p), pl+int64(n)
				if o.Trust == nil && !b.Held() {
					known = noteSize(b.Checkpoint)
				}
				if o.Trust != nil {
					res, err := cache.VerifyLookup(o.Trust, st, uid, b, time.Now())
					if err == nil {
						err = st.Apply(res, time.Now())
						delete(st.Contacts, res.UserID) // pin nothing
					}
					if err != nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, fmt.Errorf("lookup of %s does not verify: %w", uid, err))
						mu.Unlock()
						cancel()
						break
					}
					ver++
					known = res.Checkpoint.Size
				}
			}
			mu.Lock()
			lat = append(lat, my...)
			proofBytes, payloadBytes, verified = proofBytes+pb, payloadBytes+pl, verified+ver
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r.Lookups = len(lat)
	r.Verified = int(verified)
	if len(lat) > 0 {
		slices.Sort(lat)
		r.LookupsPerSec = float64(len(lat)) / el.Seconds()
		r.P50, r.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
		r.ProofBytes = float64(proofBytes) / float64(len(lat))
		r.PayloadBytes = float64(payloadBytes) / float64(len(lat))
	}
	return firstErr
}

// noteSize is the tree size of a checkpoint note, unverified (0 if it
// does not parse): what a worker that does not verify sends as its known
// size.
func noteSize(n []byte) uint64 {
	i := bytes.LastIndex(n, []byte("\n\n"))
	if i < 0 {
		return 0
	}
	c, err := klog.ParseCheckpoint(n[:i+1])
	if err != nil {
		return 0
	}
	return c.Size
}

// BundleSize returns the bytes of a lookup bundle without the
// AccountUpdate's payload (the byte fields, 8 for the log index), and the
// payload's size.
func BundleSize(b *verifier.LookupBundle) (proof, payload int) {
	proof = len(b.Checkpoint) + len(b.VRFProof) + len(b.MapProof) + len(b.EpochRecord) + 8
	for _, l := range [][][]byte{b.EpochRecordInclusion, b.Consistency} {
		for _, h := range l {
			proof += len(h)
		}
	}
	if u, err := klog.ParseAccountUpdate(b.AccountUpdate); err == nil {
		payload = len(u.Payload)
		proof += len(b.AccountUpdate) - payload
	}
	return proof, payload
}

// stateOf returns the AccountState an AccountUpdate sets.
func stateOf(u *klog.AccountUpdate) (*devices.AccountState, error) {
	if u.Update == klog.UpdateReset {
		a, err := devices.ParseResetAuthorization(u.Payload)
		if err != nil {
			return nil, err
		}
		return a.NewState, nil
	}
	return devices.ParseAccountState(u.Payload)
}
