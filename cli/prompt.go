package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// stdinIsTerminal reports whether stdin is an interactive terminal.
func (a *app) stdinIsTerminal() bool {
	return a.inFile != nil && isTerminal(a.inFile.Fd())
}

// privateScreenTerminal reports whether stdin and stdout are the same kind
// of interactive terminal, so that a secret can be shown or typed on the
// terminal's alternate screen (see privateScreen).
func (a *app) privateScreenTerminal() bool {
	f, ok := a.out.(*os.File)
	return ok && isTerminal(f.Fd()) && a.stdinIsTerminal()
}

// Terminal control sequences for the alternate screen buffer (xterm's
// private mode 1049, also in VT220 descendants, tmux, screen, VS Code).
const (
	enterAltScreen = "\x1b[?1049h\x1b[H\x1b[2J" // save cursor, switch, clear
	leaveAltScreen = "\x1b[H\x1b[2J\x1b[?1049l" // clear, switch back, restore cursor
)

// privateScreen runs f on the terminal's alternate screen when stdin and
// stdout are terminals: a paper key shown or typed there is gone from the
// screen and the scrollback when f returns (or fails, or is interrupted),
// instead of staying in the terminal for anyone who looks later. Without a
// terminal, f runs as it is.
func (a *app) privateScreen(f func() error) error {
	if !a.privateScreenTerminal() {
		return f()
	}
	fmt.Fprint(a.out, enterAltScreen)
	defer fmt.Fprint(a.out, leaveAltScreen)
	return f()
}

// stderrIsTerminal reports whether stderr is a terminal (for the progress bar).
func (a *app) stderrIsTerminal() bool {
	f, ok := a.errw.(*os.File)
	return ok && isTerminal(f.Fd())
}

// errInterrupted is returned by a prompt whose run was cancelled (Ctrl-C
// or SIGTERM) while it waited for input.
var errInterrupted = errors.New("interrupted while waiting for input")

// readInput reads one line (with its ending) from stdin, giving up when the
// run's context is cancelled: keyline catches Ctrl-C to shut down cleanly,
// so a prompt that did not watch the context would ignore it. After an
// interruption the abandoned read may still consume a line; the command
// returns at once and reads nothing more.
func (a *app) readInput() (string, error) {
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return "", errInterrupted
	}
	type answer struct {
		line string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		line, err := a.in.ReadString('\n')
		done <- answer{line, err}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-ctx.Done():
		return "", errInterrupted
	}
}

// readLine prints prompt on stderr and reads one line from stdin, without
// its line ending. At end of input without a line it fails with a message
// naming what was asked.
func (a *app) readLine(prompt string) (string, error) {
	if prompt != "" {
		fmt.Fprint(a.errw, prompt)
	}
	line, err := a.readInput()
	if errors.Is(err, errInterrupted) {
		fmt.Fprintln(a.errw)
		return "", failf("", nil, "interrupted; nothing more was done")
	}
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", failf("answer on stdin (or pass the value as a flag)", nil, "no input for %q (end of input)", strings.TrimSpace(prompt))
		}
		return "", failf("", err, "reading stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// confirm asks a yes/no question; only "y" or "yes" is yes. With assumeYes
// it answers yes without asking.
func (a *app) confirm(question string, assumeYes bool) (bool, error) {
	if assumeYes {
		return true, nil
	}
	ans, err := a.readLine(question + " [y/N] ")
	if err != nil {
		return false, err
	}
	ans = strings.ToLower(strings.TrimSpace(ans))
	return ans == "y" || ans == "yes", nil
}

// confirmOr is confirm for a question that scripts answer with a flag:
// when stdin holds no answer, the error names the flag (hint).
func (a *app) confirmOr(question string, assumeYes bool, hint string) (bool, error) {
	if a.jsonOut && !assumeYes {
		return false, failf(hint, nil, "%s (--json never asks)", strings.TrimSuffix(question, "?"))
	}
	ok, err := a.confirm(question, assumeYes)
	var e *Error
	if errors.As(err, &e) && !a.stdinIsTerminal() {
		e.Hint = hint
	}
	return ok, err
}

// minPassphraseLen is the shortest passphrase accepted for a new keystore,
// from any source (terminal, $KEYLINE_PASSPHRASE, --passphrase-file).
const minPassphraseLen = 8

// passphrase returns the keystore passphrase: from --passphrase-file, else
// $KEYLINE_PASSPHRASE, else asked on the terminal without echo (twice when
// creating a keystore). It never reads a passphrase from a non-terminal
// stdin, so scripts cannot hang on a hidden prompt.
func (a *app) passphrase(creating bool) ([]byte, error) {
	if a.passphraseFile != "" {
		b, err := os.ReadFile(a.passphraseFile)
		if err != nil {
			return nil, failf("check --passphrase-file", err, "cannot read the passphrase file")
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, failf("put the passphrase on the first line", nil, "passphrase file %s is empty", a.passphraseFile)
		}
		if creating && len(b) < minPassphraseLen {
			return nil, failf(fmt.Sprintf("use at least %d characters", minPassphraseLen), nil, "the passphrase in %s is too short for a new keystore", a.passphraseFile)
		}
		return b, nil
	}
	if p := a.getenv("KEYLINE_PASSPHRASE"); p != "" {
		if creating && len(p) < minPassphraseLen {
			return nil, failf(fmt.Sprintf("use at least %d characters", minPassphraseLen), nil, "$KEYLINE_PASSPHRASE is too short for a new keystore")
		}
		return []byte(p), nil
	}
	if a.jsonOut {
		return nil, failf("set KEYLINE_PASSPHRASE or use --passphrase-file with --json", nil, "no passphrase for the keystore (--json never asks)")
	}
	if !a.stdinIsTerminal() {
		return nil, failf("set KEYLINE_PASSPHRASE or use --passphrase-file when stdin is not a terminal", nil, "no passphrase for the keystore")
	}
	if !echoOffSupported {
		fmt.Fprintln(a.errw, "warning: this platform cannot hide typed input; your passphrase will be visible")
	}
	read := func(prompt string) ([]byte, error) {
		b, err := withoutEcho(a.inFile.Fd(), func() ([]byte, error) {
			// The prompt comes after echo is off, so nothing typed in
			// answer to it is ever shown.
			fmt.Fprint(a.errw, prompt)
			line, err := a.readInput()
			if err != nil && line == "" {
				return nil, err
			}
			return []byte(strings.TrimRight(line, "\r\n")), nil
		})
		fmt.Fprintln(a.errw)
		if err != nil {
			return nil, failf("", err, "reading the passphrase")
		}
		return b, nil
	}
	if !creating {
		return read("Keystore passphrase: ")
	}
	for {
		p1, err := read("New keystore passphrase (protects this device's keys): ")
		if err != nil {
			return nil, err
		}
		if len(p1) < minPassphraseLen {
			fmt.Fprintf(a.errw, "Use at least %d characters.\n", minPassphraseLen)
			continue
		}
		p2, err := read("Repeat the passphrase: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			fmt.Fprintln(a.errw, "The passphrases differ; try again.")
			continue
		}
		return p1, nil
	}
}
