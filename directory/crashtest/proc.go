package crashtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/keyline of the module containing the working directory
// into dir and returns the binary's path.
func Build(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "keyline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keyline")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keyline: %v\n%s", err, out)
	}
	return bin, nil
}

// Serve is a running `keyline serve` child process.
type Serve struct {
	Cmd    *exec.Cmd
	Addr   string // gRPC address, once started
	stderr *lockedBuf
	done   chan error
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs `bin --json serve --listen 127.0.0.1:0 --data-dir dataDir
// args...`. If wait, it returns once the server listens (Addr set) or
// fails; otherwise at once (Addr empty).
func Start(bin, dataDir string, wait bool, args ...string) (*Serve, error) {
	cmd := exec.Command(bin, append([]string{"--json", "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	s := &Serve{Cmd: cmd, stderr: &lockedBuf{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addrc := make(chan string, 1)
	go func() {
		// serve --json writes one JSON object (possibly indented) on stdout.
		var m struct{ Listen string }
		if json.NewDecoder(stdout).Decode(&m) == nil && m.Listen != "" {
			addrc <- m.Listen
		}
		close(addrc)
		_, _ = io.Copy(io.Discard, stdout)
		s.done <- cmd.Wait()
	}()
	if !wait {
		return s, nil
	}
	select {
	case a, ok := <-addrc:
		if !ok {
			err := <-s.done
			s.done <- err
			return nil, fmt.Errorf("keyline serve exited (%v) before listening:\n%s", err, s.Stderr())
		}
		s.Addr = a
		return s, nil
	case <-time.After(60 * time.Second):
		s.Kill()
		return nil, fmt.Errorf("keyline serve did not listen within 60s:\n%s", s.Stderr())
	}
}

// Stderr returns what the process wrote to stderr so far.
func (s *Serve) Stderr() string { return s.stderr.String() }

// Pid returns the process id.
func (s *Serve) Pid() int { return s.Cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to exit.
func (s *Serve) Kill() {
	_ = s.Cmd.Process.Signal(syscall.SIGKILL)
	err := <-s.done
	s.done <- err
}

// Stop sends SIGTERM and waits for a clean exit (SIGKILL after 10s).
func (s *Serve) Stop() error {
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(10 * time.Second):
		s.Kill()
		return fmt.Errorf("keyline serve did not exit within 10s of SIGTERM")
	}
}

// PeakRSS returns the process's peak resident set size in bytes (VmHWM).
func (s *Serve) PeakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", s.Pid())
}
