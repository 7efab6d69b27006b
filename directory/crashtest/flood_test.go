package crashtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
	pb "github.com/keyline/keyline/proto"
)

// rawCodec sends pre-marshaled request bytes (so that the flooding client
// does not copy 200 KiB per call) and discards responses.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}
func (rawCodec) Unmarshal([]byte, any) error { return nil }

// dialFrom connects to addr from the local address ip (any 127.0.0.0/8
// address works on Linux loopback), so that the server sees distinct peers.
func dialFrom(addr, ip string) (*grpc.ClientConn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(client.DefaultMaxRecvMsgSize)))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// honest runs sequential lookups of known accounts from its own address
// until ctx ends and returns their latencies and failures.
func honest(ctx context.Context, c *client.Client, uids []string, workers int) (lat []time.Duration, failed map[string]int) {
	failed = map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				_, err := c.Lookup(rctx, uids[i%len(uids)], 0)
				d := time.Since(t0)
				cancel()
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				if err != nil {
					failed[fmt.Sprintf("%v/%s", apierr.Code(err), apierr.Reason(err))]++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, failed
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// BenchmarkFlood repeats the flood of issue 15 against a real `keyline
// serve` process with its default limits: KEYLINE_FLOOD_UPDATES (3000)
// concurrent garbage Updates of 200 KiB each (a valid UpdateRequest whose
// account_state is random bytes) and KEYLINE_FLOOD_LOOKUPS (3000)
// concurrent Lookups, each flooder resending as soon as it is answered, for
// KEYLINE_FLOOD_SECONDS (10) seconds, from KEYLINE_FLOOD_IPS (1) loopback
// addresses (KEYLINE_FLOOD_SERVE_ARGS: extra serve flags, e.g. limits);
// meanwhile an honest client on its own address runs 4
// sequential lookup loops. It reports the server's peak RSS (VmHWM) and the
// honest lookups' p50/p99 during the flood, with the p99 before the flood
// as the reference. Run it with -benchtime=1x:
//
//	go test -run XXX -bench Flood -benchtime=1x ./directory/crashtest
func BenchmarkFlood(b *testing.B) {
	nUpd, nLook := envInt("KEYLINE_FLOOD_UPDATES", 3000), envInt("KEYLINE_FLOOD_LOOKUPS", 3000)
	secs, ips := envInt("KEYLINE_FLOOD_SECONDS", 10), envInt("KEYLINE_FLOOD_IPS", 1)
	bin, err := Build(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	args := append([]string{"--epoch-interval", "100ms", "--insecure-no-sync"}, strings.Fields(os.Getenv("KEYLINE_FLOOD_SERVE_ARGS"))...)
	s, err := Start(bin, filepath.Join(b.TempDir(), "data"), true, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Kill()
	conn, err := dialFrom(s.Addr, "127.0.0.2")
	if err != nil {
		b.Fatal(err)
	}
	hc := client.New(conn)
	defer hc.Close()
	// Honest accounts to look up.
	var uids []string
	for i := 0; i < 50; i++ {
		a, err := loadgen.NewAccount("honest", i)
		if err != nil {
			b.Fatal(err)
		}
		st, _ := a.Create(time.Now())
		enc, _ := st.MarshalBinary()
		if _, err := hc.Update(context.Background(), enc); err != nil {
			b.Fatal(err)
		}
		uids = append(uids, a.UserID)
	}
	garbage := make([]byte, 200<<10)
	rand.Read(garbage)
	updBody, _ := proto.Marshal(&pb.UpdateRequest{AccountState: garbage})
	lookBody, _ := proto.Marshal(&pb.LookupRequest{UserId: "honest-1"})

	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ref, _ := honest(ctx, hc, uids, 4)
		cancel()
		rssBefore, _ := s.PeakRSS()

		var conns []*grpc.ClientConn
		for j := 0; j < ips; j++ {
			fc, err := dialFrom(s.Addr, fmt.Sprintf("127.0.1.%d", 1+j%250))
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, fc)
		}
		var outcomes sync.Map // reason -> *atomic.Int64
		count := func(err error) {
			k := "ok"
			if err != nil {
				err = apierr.FromStatus(err)
				k = fmt.Sprintf("%v/%s", apierr.Code(err), apierr.Reason(err))
			}
			v, _ := outcomes.LoadOrStore(k, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
		fctx, fcancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
		var wg sync.WaitGroup
		flood := func(n int, method string, body []byte) {
			for j := 0; j < n; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					fc := conns[j%len(conns)]
					for fctx.Err() == nil {
						var out []byte
						err := fc.Invoke(fctx, method, &body, &out, grpc.ForceCodec(rawCodec{}))
						if fctx.Err() == nil {
							count(err)
						}
					}
				}()
			}
		}
		srvCPU0, cliCPU0 := procCPU(s.Pid()), selfCPU()
		start := time.Now()
		flood(nUpd, pb.Directory_Update_FullMethodName, updBody)
		flood(nLook, pb.Directory_Lookup_FullMethodName, lookBody)
		lat, failed := honest(fctx, hc, uids, 4)
		wg.Wait()
		fcancel()
		elapsed := time.Since(start)
		srvCPU, cliCPU := procCPU(s.Pid())-srvCPU0, selfCPU()-cliCPU0
		for _, fc := range conns {
			fc.Close()
		}
		peak, err := s.PeakRSS()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
		b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "honest-p99-ms")
		b.ReportMetric(float64(pct(ref, 0.99).Microseconds())/1000, "ref-p99-ms")
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "honest-lookups/s")
		var summary string
		outcomes.Range(func(k, v any) bool {
			summary += fmt.Sprintf(" %s=%d", k, v.(*atomic.Int64).Load())
			return true
		})
		b.Logf("flood %d updates x 200 KiB + %d lookups from %d addresses for %v: server RSS peak %.0f MB (%.0f MB before); honest lookups: %d answered (%.0f/s), failed %v, p50 %v, p99 %v (before the flood: %d answered in 2s, p99 %v); CPU: server %.1fs, flooding+honest client %.1fs; load average %s; flood outcomes:%s",
			nUpd, nLook, ips, elapsed.Round(time.Millisecond), float64(peak)/(1<<20), float64(rssBefore)/(1<<20),
			len(lat), float64(len(lat))/elapsed.Seconds(), failed, pct(lat, 0.5), pct(lat, 0.99), len(ref), pct(ref, 0.99), srvCPU.Seconds(), cliCPU.Seconds(), loadavg(), summary)
		if len(lat) == 0 {
			b.Fatal("no honest lookup was answered during the flood")
		}
	}
}

// procCPU returns the user+system CPU time of process pid.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadavg returns the 1-minute load average (the machine is shared).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
