package crashtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
)

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory
// (unmounted at cleanup), or skips the test if it cannot (not root).
func mountTmpfs(t *testing.T, size int) string {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a size-limited tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes path until the file system is full (ENOSPC).
func fill(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// createOne creates a fresh account and returns the error.
func (r *crashRun) createOne(c *client.Client) error {
	r.mu.Lock()
	id := r.nextID
	r.nextID++
	r.mu.Unlock()
	la, err := loadgen.NewAccount("fault", id)
	if err != nil {
		return err
	}
	st, err := la.Create(time.Now())
	if err != nil {
		return err
	}
	b, _ := st.MarshalBinary()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Update(ctx, b)
	a := &account{la: la}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accounts = append(r.accounts, a)
	if err != nil {
		a.pending, a.pendingState = b, st
		return err
	}
	a.state = st
	r.acks = append(r.acks, ack{a: a, version: 1, index: res.LogIndex, leaf: res.Leaf})
	r.stats.acks++
	return nil
}

// faultPhase runs load while a storage fault is in place (inject starts it
// and returns the function that ends it), then checks that updates were
// refused with STORAGE_FAILURE, that lookups were still answered, that the
// server names the fault on stderr, and that it recovers by itself once the
// fault ends: a new account is accepted without a restart. If noSigning,
// no log write can be made durable during the fault, so the served
// checkpoint must not grow: nothing is signed over unpersisted leaves.
func (r *crashRun) faultPhase(s *Serve, c *client.Client, rng *rand.Rand, name, wantLog string, noSigning bool, inject func() (end func())) {
	t := r.t
	stop := r.startLoad(c, rng)
	time.Sleep(200 * time.Millisecond)
	stop()
	before := r.stats.failures[apierr.StorageFailure]
	lookupsBefore := r.stats.lookups
	lookupErrsBefore := maps.Clone(r.stats.lookupErrs)
	end := inject()
	time.Sleep(100 * time.Millisecond) // an epoch that synced before the fault may still publish
	sizeAt := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		note, err := c.Checkpoint(ctx)
		if err != nil {
			t.Fatalf("%s: checkpoint during the fault: %v", name, err)
		}
		vc, err := r.trust.OpenCheckpoint(note)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return vc.Size
	}
	sizeBefore := sizeAt()
	// Load for at least 1.5 s, and until the fault has failed an epoch
	// (an update was refused) and minLookups lookups were answered after
	// that: lookups must go on while epochs fail, not only before the
	// first failure. On a loaded machine this takes longer; if lookups
	// stop, the deadline ends the load with fewer answered.
	const minLookups = 20
	stop = r.startLoad(c, rng)
	start := time.Now()
	var refusedAt time.Time
	var lookupsAtRefusal uint64
	for deadline := start.Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		r.mu.Lock()
		refusedNow, lookupsNow := r.stats.failures[apierr.StorageFailure]-before, r.stats.lookups
		r.mu.Unlock()
		if refusedAt.IsZero() && refusedNow > 0 {
			refusedAt, lookupsAtRefusal = time.Now(), lookupsNow
		}
		if time.Since(start) >= 1500*time.Millisecond && !refusedAt.IsZero() && lookupsNow-lookupsAtRefusal >= minLookups {
			break
		}
	}
	stop()
	loaded := time.Since(start).Round(time.Millisecond)
	if sizeAfter := sizeAt(); noSigning && sizeAfter != sizeBefore {
		t.Fatalf("%s: the checkpoint grew from %d to %d while no log write could be synced", name, sizeBefore, sizeAfter)
	}
	refused := r.stats.failures[apierr.StorageFailure] - before
	lookups := r.stats.lookups - lookupsBefore
	end()
	if refused == 0 || refusedAt.IsZero() {
		t.Fatalf("%s: no update was refused with %s in %v (failures %v); server stderr:\n%s", name, apierr.StorageFailure, loaded, r.stats.failures, tail(s.Stderr()))
	}
	lookupErrs := map[string]int{}
	for e, n := range r.stats.lookupErrs {
		if d := n - lookupErrsBefore[e]; d > 0 {
			lookupErrs[e] = d
		}
	}
	if after := r.stats.lookups - lookupsAtRefusal; after < minLookups {
		t.Fatalf("%s: lookups stopped once epochs failed: %d answered in the %v of load after the first refused update, %d during the whole fault (failed lookups: %v); server stderr:\n%s",
			name, after, start.Add(loaded).Sub(refusedAt).Round(time.Millisecond), lookups, lookupErrs, tail(s.Stderr()))
	}
	if !strings.Contains(s.Stderr(), wantLog) {
		t.Fatalf("%s: server stderr does not name the fault (%q):\n%s", name, wantLog, tail(s.Stderr()))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := r.createOne(c)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no recovery 30s after the fault ended: %v\n%s", name, err, tail(s.Stderr()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: %d updates refused with %s in %v of load, %d lookups answered meanwhile (%d after the first refusal; failed: %v); recovered without a restart",
		name, refused, apierr.StorageFailure, loaded, lookups, r.stats.lookups-lookupsAtRefusal, lookupErrs)
}

// restartAndCheck kills s with SIGKILL, restarts it and runs the restart
// checks (nothing acknowledged lost, no checkpoint regression or fork, the
// auditor's replay, new updates accepted).
func (r *crashRun) restartAndCheck(s *Serve, trial int) *Serve {
	s.Kill()
	s2, err := Start(r.bin, r.dir, true, serveArgs...)
	if err != nil {
		r.t.Fatalf("restart: %v", err)
	}
	c, err := client.Dial(s2.Addr)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	r.afterRestart(c, trial)
	return s2
}

// TestDiskFull runs `keyline serve` on a small tmpfs and fills it under
// load: updates are refused with STORAGE_FAILURE (never acknowledged
// unless committed), lookups go on, the server logs "no space left on
// device", and once space is freed it accepts updates again without a
// restart. A SIGKILL and restart then shows that nothing acknowledged was
// lost and no checkpoint regressed or forked (so none was signed over
// unpersisted leaves), and the auditor's replay passes.
func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, 64<<20)
	r, s := newCrashRun(t, filepath.Join(mnt, "data"))
	defer func() { s.Kill() }()
	c, err := client.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.afterRestart(c, 0)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	filler := filepath.Join(mnt, "filler")
	r.faultPhase(s, c, rng, "disk full", "no space left on device", false, func() func() {
		fill(t, filler)
		return func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
	})
	s = r.restartAndCheck(s, 1)
}

// straceInject attaches strace to the process pid and makes the syscalls
// of set on files under path fail with errno, until the returned function
// detaches it.
func straceInject(t *testing.T, pid int, path, set, errno string) func() {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed (scripts/integration-faults.sh installs it)")
	}
	cmd := exec.Command("strace", "-f", "-qq", "-o", "/dev/null", "-p", fmt.Sprint(pid), "-P", path,
		"-e", "trace="+set, "-e", "inject="+set+":error="+errno)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// strace writes nothing with -qq; give it time to attach to every thread
	// (it stops them all before returning to the tracee).
	attached := make(chan struct{})
	go func() {
		br := bufio.NewReader(stderr)
		close(attached)
		_, _ = io.Copy(io.Discard, br)
	}()
	<-attached
	deadline := time.Now().Add(10 * time.Second)
	for !tracedBy(pid, cmd.Process.Pid) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("strace did not attach to %d", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt) // detaches
		_ = cmd.Wait()
	}
}

// tracedBy reports whether pid's TracerPid is tracer.
func tracedBy(pid, tracer int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	return strings.Contains(string(b), fmt.Sprintf("\nTracerPid:\t%d\n", tracer))
}

// TestDiskFaultsInjected makes the real `keyline serve` process's writes
// and fsyncs fail with EIO (strace syscall fault injection, attached to the
// running process and detached later), one fault at a time: fdatasync of
// the log (log.db), pwrite of the map and index (directory.db), and
// fdatasync of directory.db. Each time the same properties as TestDiskFull
// are checked, ending with a SIGKILL and the restart checks.
func TestDiskFaultsInjected(t *testing.T) {
	if os.Getenv("KEYLINE_FAULT_TESTS") == "" {
		t.Skip("set KEYLINE_FAULT_TESTS=1 (scripts/integration-faults.sh) to run the strace fault injection")
	}
	r, s := newCrashRun(t, filepath.Join(t.TempDir(), "data"))
	defer func() { s.Kill() }()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for i, f := range []struct{ file, set string }{
		{"log.db", "fdatasync,fsync"},
		{"directory.db", "pwrite64,pwritev,write"},
		{"directory.db", "fdatasync,fsync"},
	} {
		c, err := client.Dial(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r.afterRestart(c, 0)
		}
		name := fmt.Sprintf("EIO on %s of %s", f.set, f.file)
		r.faultPhase(s, c, rng, name, "input/output error", f.file == "log.db", func() func() {
			return straceInject(t, s.Pid(), filepath.Join(r.dir, f.file), f.set, "EIO")
		})
		c.Close()
		s = r.restartAndCheck(s, i+1)
	}
}
