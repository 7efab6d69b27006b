//go:build linux

package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns the master and slave ends of a new pseudo-terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// readUntil reads the master until marker appears and returns what came
// before it.
func readUntil(t *testing.T, m *os.File, marker string) string {
	t.Helper()
	var b bytes.Buffer
	buf := make([]byte, 256)
	for !strings.Contains(b.String(), marker) {
		n, err := m.Read(buf)
		if err != nil {
			t.Fatalf("reading the terminal: %v (got %q)", err, b.String())
		}
		b.Write(buf[:n])
	}
	return b.String()[:strings.Index(b.String(), marker)]
}

// TestPassphraseNoEcho types a passphrase into a real pseudo-terminal: the
// prompt must read it without echoing it, and restore echo afterwards.
func TestPassphraseNoEcho(t *testing.T) {
	m, s := openPty(t)
	if !isTerminal(s.Fd()) {
		t.Fatal("isTerminal(pty) = false")
	}
	var errb syncBuf
	a := &app{in: bufio.NewReader(s), inFile: s, errw: &errb, getenv: func(string) string { return "" }}
	// Type only once the prompt is shown, as a person would.
	go func() {
		for !strings.Contains(errb.String(), "passphrase: ") {
			time.Sleep(time.Millisecond)
		}
		m.WriteString("hunter2 secret\n")
	}()
	got, err := a.passphrase(false)
	if err != nil || string(got) != "hunter2 secret" {
		t.Fatalf("passphrase = %q, %v", got, err)
	}
	s.WriteString("MARK1")
	if echoed := readUntil(t, m, "MARK1"); strings.Contains(echoed, "hunter2") {
		t.Fatalf("the passphrase was echoed: %q", echoed)
	}
	// Echo is back on for the next line.
	m.WriteString("visible\n")
	line, err := a.in.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "visible" {
		t.Fatalf("next line %q, %v", line, err)
	}
	s.WriteString("MARK2")
	if echoed := readUntil(t, m, "MARK2"); !strings.Contains(echoed, "visible") {
		t.Fatalf("echo was not restored: %q", echoed)
	}
	if !strings.Contains(errb.String(), "Keystore passphrase: ") {
		t.Fatalf("no prompt on stderr: %q", errb.String())
	}
}

// TestPassphraseSources: file, then environment; a non-terminal stdin is
// never read for a passphrase.
func TestPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KEYLINE_PASSPHRASE": "from-env"}
	a := &app{in: bufio.NewReader(strings.NewReader("from-stdin\n")), errw: &syncBuf{}, getenv: func(k string) string { return env[k] }}
	if p, err := a.passphrase(false); err != nil || string(p) != "from-env" {
		t.Fatalf("env: %q %v", p, err)
	}
	a.passphraseFile = dir + "/p"
	os.WriteFile(a.passphraseFile, []byte("from-file\r\n"), 0o600)
	if p, err := a.passphrase(false); err != nil || string(p) != "from-file" {
		t.Fatalf("file: %q %v", p, err)
	}
	a.passphraseFile = ""
	delete(env, "KEYLINE_PASSPHRASE")
	if _, err := a.passphrase(true); err == nil || !strings.Contains(err.Error(), "KEYLINE_PASSPHRASE") {
		t.Fatalf("non-terminal stdin: %v", err)
	}
}

// TestPaperKeyPrivateScreen confirms a paper key on a real pseudo-terminal:
// the words are shown only between entering and leaving the alternate
// screen, so they are not left on the screen or in the scrollback.
func TestPaperKeyPrivateScreen(t *testing.T) {
	m, s := openPty(t)
	paper := strings.Repeat("abandon ", 23) + "art"
	var errb syncBuf
	a := &app{in: bufio.NewReader(s), inFile: s, out: s, errw: &errb, rand: rand.Reader, getenv: func(string) string { return "" }}
	go func() {
		// Answer the two confirmation prompts with the word asked for.
		for answered := 0; answered < 2; {
			if strings.Count(errb.String(), "Word #") > answered {
				answered++
				word := "abandon"
				if strings.HasSuffix(strings.TrimSpace(errb.String()), "#24:") {
					word = "art"
				}
				m.WriteString(word + "\n")
			}
			time.Sleep(time.Millisecond)
		}
	}()
	err := a.privateScreen(func() error {
		a.showPaperKey(a.out, paper)
		return a.confirmPaperKey(paper)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.WriteString("MARK2")
	screen := readUntil(t, m, "MARK2")
	enter, leave := strings.Index(screen, enterAltScreen), strings.LastIndex(screen, leaveAltScreen)
	if enter < 0 || leave < enter {
		t.Fatalf("paper key not shown on the alternate screen: %q", screen)
	}
	if strings.Contains(screen[:enter], "abandon") || strings.Contains(screen[leave:], "abandon") {
		t.Fatalf("paper key words outside the alternate screen: %q", screen)
	}
	if !strings.Contains(screen[enter:leave], " 1. abandon") {
		t.Fatalf("paper key not shown: %q", screen)
	}
}

// TestPromptInterrupted cancels the run while a prompt waits for input:
// the prompt must give up at once (keyline catches Ctrl-C, so a prompt that
// ignored the context would hang until Enter).
func TestPromptInterrupted(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuf
	a := &app{in: bufio.NewReader(r), inFile: r, errw: &errb, ctx: ctx}
	done := make(chan error, 1)
	go func() {
		_, err := a.readLine("Word #3: ")
		done <- err
	}()
	for !strings.Contains(errb.String(), "Word #3") {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("readLine after cancel = %v, want an interrupted error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("readLine ignored the cancelled context")
	}
}
