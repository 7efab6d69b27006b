package cli

import (
	"bytes"
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

// stderrIsTerminal reports whether stderr is a terminal (for the progress bar).
func (a *app) stderrIsTerminal() bool {
	f, ok := a.errw.(*os.File)
	return ok && isTerminal(f.Fd())
}

// readLine prints prompt on stderr and reads one line from stdin, without
// its line ending. At end of input without a line it fails with a message
// naming what was asked.
func (a *app) readLine(prompt string) (string, error) {
	if prompt != "" {
		fmt.Fprint(a.errw, prompt)
	}
	line, err := a.in.ReadString('\n')
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
			line, err := a.in.ReadString('\n')
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
