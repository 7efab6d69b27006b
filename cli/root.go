package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// DefaultServer is the directory address clients use without --server, and
// the address `keyline serve` listens on without --listen.
const DefaultServer = "127.0.0.1:7411"

// IO is what a command line run reads and writes. Zero fields mean the
// process's own stdin, stdout, stderr and environment.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv looks up environment variables (os.Getenv if nil).
	Getenv func(string) string
}

// app holds one run's I/O and global options.
type app struct {
	in     *bufio.Reader
	inFile *os.File // stdin when it is a file (for terminal checks)
	out    io.Writer
	errw   io.Writer
	getenv func(string) string
	now    func() time.Time
	rand   io.Reader
	ctx    context.Context // the run's context: prompts give up when it is cancelled (Ctrl-C)

	server         string
	dataDir        string
	trustPath      string
	configPath     string
	jsonOut        bool
	witnessQuorum  int
	passphraseFile string
	timeout        time.Duration
	qrInvert       bool
	useTLS         bool   // --tls: connect to the directory over TLS
	tlsCA          string // --tls-ca: trust this CA (or self-signed) certificate; implies --tls
	tlsServerName  string // --tls-server-name: name to verify instead of the --server host; implies --tls

	keepStateBackup bool // do not make the client state the backup after this command (state reset)

	root *cobra.Command
}

// NewRootCommand returns the keyline command tree bound to the process's
// stdin, stdout, stderr and environment. Errors are returned from Execute
// unprinted; use Run (or Main) for the printing and exit codes.
func NewRootCommand() *cobra.Command {
	return newApp(IO{}).root
}

// Main runs the keyline command line with args (without the program name)
// on the process's stdio and returns the exit code.
func Main(ctx context.Context, args []string) int {
	return Run(ctx, args, IO{})
}

// Run runs one keyline command line and returns its exit code (see
// docs/cli.md). Errors are printed on stderr: as one friendly line, or as a
// JSON object with --json.
func Run(ctx context.Context, args []string, stdio IO) int {
	a := newApp(stdio)
	a.ctx = ctx
	a.root.SetArgs(args)
	err := a.root.ExecuteContext(ctx)
	if err == nil {
		a.backupClientState()
		return ExitOK
	}
	err = normalizeCobraErr(err)
	e := asError(err)
	if a.jsonOut {
		msg := e.Error()
		writeJSON(a.errw, jsonError{Error: msg, Kind: e.Kind, ExitCode: e.Code, Message: e.Msg, Hint: jsonStr(e.Hint), Reason: jsonStr(e.Reason)})
	} else {
		fmt.Fprintf(a.errw, "keyline: %s\n", e.Error())
		if e.Code == ExitUsage {
			fmt.Fprintln(a.errw, "run `keyline help` (or add --help to the command) for usage")
		}
	}
	return e.Code
}

// normalizeCobraErr turns cobra's own argument errors into usage errors.
func normalizeCobraErr(err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs", "required flag", "if any flags"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return &Error{Code: ExitUsage, Kind: KindUsage, Err: err}
		}
	}
	return err
}

func newApp(stdio IO) *app {
	a := &app{now: time.Now, rand: rand.Reader, witnessQuorum: -1}
	in := stdio.Stdin
	if in == nil {
		in = os.Stdin
	}
	if f, ok := in.(*os.File); ok {
		a.inFile = f
	}
	a.in = bufio.NewReader(in)
	a.out, a.errw, a.getenv = stdio.Stdout, stdio.Stderr, stdio.Getenv
	if a.out == nil {
		a.out = os.Stdout
	}
	if a.errw == nil {
		a.errw = os.Stderr
	}
	if a.getenv == nil {
		a.getenv = os.Getenv
	}

	root := &cobra.Command{
		Use:   "keyline",
		Short: "Keyline: key transparency directory for multi-device end-to-end encrypted chat",
		Long: `Keyline publishes every account's identity key and devices in a verifiable,
append-only directory. This one binary is the directory server (serve), the
client (account, device, lookup, safety-number, verify), the owner monitor
(monitor), the auditor (audit) and the witness (witness).

Exit codes: 0 ok, 1 error, 2 usage, 3 verification failure (never ignore it),
4 directory unreachable, 5 rejected by the directory. See docs/cli.md.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.setup(cmd)
		},
	}
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.errw)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &Error{Code: ExitUsage, Kind: KindUsage, Err: err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", DefaultServer, "directory address host:port")
	pf.StringVar(&a.dataDir, "data-dir", "", "client state directory (default $KEYLINE_HOME or ~/.keyline)")
	pf.StringVar(&a.trustPath, "trust", "", "trust.json of the directory (default <data-dir>/trust.json)")
	pf.StringVar(&a.configPath, "config", "", "config file (JSON or key=value lines) with these global settings; flags override it")
	pf.BoolVar(&a.jsonOut, "json", false, "machine-readable JSON on stdout (errors as JSON on stderr)")
	pf.IntVar(&a.witnessQuorum, "witness-quorum", -1, "override the witness quorum of the trust file (cosignatures required)")
	pf.StringVar(&a.passphraseFile, "passphrase-file", "", "read the keystore passphrase from this file (else $KEYLINE_PASSPHRASE, else a prompt)")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "timeout for each request to the directory")
	pf.BoolVar(&a.qrInvert, "qr-invert", false, "draw QR codes for light-background terminals")
	pf.BoolVar(&a.useTLS, "tls", false, "connect to the directory over TLS, verifying its certificate against the system roots")
	pf.StringVar(&a.tlsCA, "tls-ca", "", "PEM CA (or self-signed) certificate to verify the directory's TLS certificate with, instead of the system roots; implies --tls")
	pf.StringVar(&a.tlsServerName, "tls-server-name", "", "name the directory's TLS certificate must carry (default: the host of --server); implies --tls")
	a.root = root

	root.AddCommand(
		a.serveCmd(),
		a.accountCmd(),
		a.deviceCmd(),
		a.lookupCmd(),
		a.safetyNumberCmd(),
		a.verifyCmd(),
		a.monitorCmd(),
		a.auditCmd(),
		a.witnessCmd(),
		a.benchCmd(),
		a.stateCmd(),
		a.demoCmd(),
		a.exportTilesCmd(),
	)
	applyHelp(root)
	return a
}

// setup applies the config file and defaults after flag parsing.
func (a *app) setup(cmd *cobra.Command) error {
	if a.configPath != "" {
		if err := applyConfig(a.configPath, cmd.Root().PersistentFlags()); err != nil {
			return err
		}
	}
	if a.dataDir == "" {
		if h := a.getenv("KEYLINE_HOME"); h != "" {
			a.dataDir = h
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return failf("set KEYLINE_HOME or use --data-dir", err, "cannot find the home directory")
			}
			a.dataDir = filepath.Join(home, ".keyline")
		}
	}
	if a.trustPath == "" {
		a.trustPath = filepath.Join(a.dataDir, "trust.json")
	}
	if a.timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	return nil
}

// configKeys are the global settings a config file may hold.
var configKeys = map[string]bool{
	"server": true, "data-dir": true, "trust": true, "json": true,
	"witness-quorum": true, "passphrase-file": true, "timeout": true, "qr-invert": true,
	"tls": true, "tls-ca": true, "tls-server-name": true,
}

// applyConfig reads a config file and sets every global flag it names that
// was not given on the command line. The file is JSON (an object) or lines
// of key=value (or key: value), with # comments.
func applyConfig(path string, flags *pflag.FlagSet) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return failf("check --config", err, "cannot read config file")
	}
	settings, err := parseConfig(data)
	if err != nil {
		return &Error{Code: ExitUsage, Kind: KindUsage, Msg: "config file " + path, Err: err}
	}
	for _, kv := range settings {
		f := flags.Lookup(kv[0])
		if f == nil || !configKeys[kv[0]] {
			return usageErr("config file %s: unknown setting %q (known: server, data-dir, trust, json, witness-quorum, passphrase-file, timeout, qr-invert, tls, tls-ca, tls-server-name)", path, kv[0])
		}
		if f.Changed {
			continue // the command line wins
		}
		if err := f.Value.Set(kv[1]); err != nil {
			return usageErr("config file %s: %s: %v", path, kv[0], err)
		}
	}
	return nil
}
