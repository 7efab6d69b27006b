package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// quickstartScript is the README quickstart as a testscript scenario.
const quickstartScript = "testdata/quickstart/quickstart.txtar"

// TestQuickstart runs the README quickstart (quickstartScript) against a
// real `keyline serve` process started by the script itself, with a
// temporary HOME and the passphrase in KEYLINE_PASSPHRASE.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	testscript.Run(t, testscript.Params{
		Files: []string{quickstartScript},
		Setup: func(e *testscript.Env) error {
			home := filepath.Join(e.WorkDir, "home")
			if err := os.MkdirAll(home, 0o700); err != nil {
				return err
			}
			e.Setenv("HOME", home)
			e.Setenv("KEYLINE_INSECURE_TEST_KDF", "1")
			e.Setenv("KEYLINE_PASSPHRASE", "correct horse battery staple")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"pairing": scriptPairing,
			// freeport VAR sets VAR to a free loopback address whose port
			// the script can bind again when it restarts the server on
			// it (restartablePort).
			"freeport": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: freeport VAR")
				}
				addr, err := restartablePort()
				ts.Check(err)
				ts.Setenv(args[0], addr)
			},
			// waitport ADDR waits (up to 60 s) until ADDR accepts connections.
			"waitport": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: waitport ADDR")
				}
				deadline := time.Now().Add(60 * time.Second)
				for {
					c, err := net.DialTimeout("tcp", args[0], time.Second)
					if err == nil {
						c.Close()
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("%s does not accept connections: %v", args[0], err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
			// retry SECONDS PROGRAM ARGS... runs PROGRAM until it succeeds,
			// for at most SECONDS.
			"retry": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: retry SECONDS PROGRAM [ARGS...]")
				}
				secs, err := strconv.Atoi(args[0])
				ts.Check(err)
				deadline := time.Now().Add(time.Duration(secs) * time.Second)
				for {
					err := ts.Exec(args[1], args[2:]...)
					if err == nil {
						return
					}
					if time.Now().After(deadline) {
						ts.Fatalf("%s did not succeed within %ds: %v\n%s", args[1], secs, err, ts.ReadFile("stderr"))
					}
					time.Sleep(200 * time.Millisecond)
				}
			},
			"grab":     scriptGrab,
			"grabfile": scriptGrabFile,
		},
	})
}

// scriptGrab is the script command `grab VAR REGEXP`: it sets VAR to the
// first submatch of REGEXP in the previous command's stdout, whitespace runs
// made one space.
func scriptGrab(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: grab VAR REGEXP")
	}
	ts.Setenv(args[0], grabStdout(ts, args[1]))
}

// scriptGrabFile is the script command `grabfile FILE REGEXP`: like grab,
// but it writes the match (and a newline) to FILE.
func scriptGrabFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: grabfile FILE REGEXP")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(grabStdout(ts, args[1])+"\n"), 0o600))
}

func grabStdout(ts *testscript.TestScript, re string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("%q not found in stdout", re)
	}
	return strings.Join(strings.Fields(m[1]), " ")
}

// quickstartSubst turns README text into what the script runs instead:
// values the README shows as placeholders, the home directory, and the
// fixed ports of the README (the test uses free ones).
var quickstartSubst = strings.NewReplacer(
	"~/", "$HOME/",
	"KL2-XXXXX-...", "$CODE",
	"KLH1-...", "$HANDOVER",
	"12345 67890 ...", "$DIGITS",
	"127.0.0.1:7412", "$WITNESS",
	"<vkey>", "$VKEY",
	"mkdir -p ", "mkdir ",
)

// quickstartExtra are the only tokens the script may append to a README
// command: the free address instead of the default 127.0.0.1:7411, a short
// epoch and no fsync for speed, the answers a terminal user gives to prompts
// (paper-key confirmation, fingerprint check), and running in the background.
var quickstartExtra = regexp.MustCompile(`^(--server \$SERVER|--listen \$SERVER|--epoch-interval 20ms|--insecure-no-sync|--no-confirm|--fingerprint \$FP|&[a-z0-9]+&)$`)

// readmeQuickstart returns the commands of README.md's quickstart block,
// translated by quickstartSubst, one per command ("a && b" gives two).
func readmeQuickstart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "## Five-minute quickstart\n")
	if !ok {
		t.Fatal(`README.md has no "## Five-minute quickstart" section`)
	}
	section, _, _ := strings.Cut(after, "\n## ")
	var cmds []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "    ") {
			continue // prose, not the indented code block
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, "  #"); i >= 0 {
			line = strings.TrimSpace(line[:i]) // trailing comment
		}
		for _, part := range strings.Split(line, " && ") {
			part = strings.TrimPrefix(strings.TrimSpace(part), "./")
			cmds = append(cmds, quickstartSubst.Replace(part))
		}
	}
	if len(cmds) == 0 {
		t.Fatal("README.md's quickstart block has no commands")
	}
	return cmds
}

// scriptQuickstart returns the commands of the scenario marked "# README".
func scriptQuickstart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(quickstartScript)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) != "# README" {
			continue
		}
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) == "" || strings.HasPrefix(lines[i+1], "#") {
			t.Fatalf("%s:%d: # README is not followed by a command", quickstartScript, i+1)
		}
		cmds = append(cmds, strings.TrimSpace(lines[i+1]))
	}
	return cmds
}

// TestQuickstartMatchesREADME checks that the quickstart scenario runs
// exactly the README's quickstart commands, in order: each marked script
// line is the README command followed only by quickstartExtra tokens.
func TestQuickstartMatchesREADME(t *testing.T) {
	readme, script := readmeQuickstart(t), scriptQuickstart(t)
	for i := 0; i < len(readme) || i < len(script); i++ {
		switch {
		case i >= len(script):
			t.Fatalf("README command %d %q is not run by %s", i+1, readme[i], quickstartScript)
		case i >= len(readme):
			t.Fatalf("%s runs %q, which is not in README.md's quickstart", quickstartScript, script[i])
		}
		if err := matchQuickstart(readme[i], script[i]); err != nil {
			t.Errorf("quickstart step %d: %v", i+1, err)
		}
	}
}

// matchQuickstart reports whether script is the README command want
// followed only by allowed extra tokens.
func matchQuickstart(want, script string) error {
	rest, ok := strings.CutPrefix(script, want)
	if !ok || (rest != "" && rest[0] != ' ') {
		return fmt.Errorf("script runs %q, README says %q", script, want)
	}
	fields := strings.Fields(rest)
	for i := 0; i < len(fields); i++ {
		tok := fields[i]
		if strings.HasPrefix(tok, "--") && i+1 < len(fields) && !strings.HasPrefix(fields[i+1], "-") && !strings.HasPrefix(fields[i+1], "&") {
			tok += " " + fields[i+1]
			if quickstartExtra.MatchString(tok) {
				i++
				continue
			}
			tok = fields[i]
		}
		if !quickstartExtra.MatchString(tok) {
			return fmt.Errorf("script adds %q to the README command %q (allowed: %s)", tok, want, quickstartExtra)
		}
	}
	return nil
}

func TestMatchQuickstart(t *testing.T) {
	for _, c := range []struct {
		want, script string
		ok           bool
	}{
		{"keyline audit", "keyline audit", true},
		{"keyline audit", "keyline audit --server $SERVER", true},
		{"keyline serve", "keyline serve --listen $SERVER --insecure-no-sync &srv&", true},
		{"keyline audit", "keyline audit --json", false},
		{"keyline audit", "keyline auditx", false},
		{"keyline lookup bob", "keyline lookup alice", false},
		{"keyline lookup bob", "keyline lookup bob --server other", false},
	} {
		if err := matchQuickstart(c.want, c.script); (err == nil) != c.ok {
			t.Errorf("matchQuickstart(%q, %q) = %v, want ok=%v", c.want, c.script, err, c.ok)
		}
	}
}
