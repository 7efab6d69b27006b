// Package adversary is a malicious Keyline directory for tests.
//
// It models a compromised or malicious operator: it holds the real
// directory's private keys (the log signing key, the VRF key and the reset
// key, read from the data dir) and uses them to lie. It can
//
//   - wrap an honest *directory.Server (its in-process verifier.Source) and
//     tamper with its answers or replay old ones (Source, with a Mode);
//   - run a second, forked directory.Server with the same keys in another
//     data dir (Fork), producing a different but validly signed history;
//   - hand-craft leaves, epoch records, map proofs and checkpoints signed
//     with the real keys on top of a copy of the honest log (Forgery).
//
// Source implements verifier.Source, so clients, monitors, auditors and
// witnesses are driven against it exactly as against a real directory. The
// attack suite (attacks_test.go, docs/attacks.md) shows that every attack of
// DESIGN.md is detected by the client, the owner's monitor or the auditor.
package adversary

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/verifier/vrf"
)

// Keys are the directory's secrets, as a malicious operator holds them.
type Keys struct {
	Origin      string
	LogSigner   note.Signer
	LogVerifier note.Verifier
	VRF         *vrf.PrivateKey
	ResetKey    ed25519.PrivateKey
}

const resetKeyHeader = "keyline-reset-seed-v1 "

// LoadKeys reads the log key, the VRF seed and the reset key from a
// directory data dir (the files directory.Open creates; see docs/api.md).
func LoadKeys(dataDir string) (*Keys, error) {
	skey, err := os.ReadFile(filepath.Join(dataDir, directory.FileLogKey))
	if err != nil {
		return nil, fmt.Errorf("adversary: log key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("adversary: log key: %w", err)
	}
	vkey, err := os.ReadFile(filepath.Join(dataDir, directory.FileLogVKey))
	if err != nil {
		return nil, fmt.Errorf("adversary: log vkey: %w", err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		return nil, fmt.Errorf("adversary: log vkey: %w", err)
	}
	sk, err := vrf.LoadSeedFile(filepath.Join(dataDir, directory.FileVRFSeed))
	if err != nil {
		return nil, fmt.Errorf("adversary: VRF key: %w", err)
	}
	rk, err := os.ReadFile(filepath.Join(dataDir, directory.FileResetKey))
	if err != nil {
		return nil, fmt.Errorf("adversary: reset key: %w", err)
	}
	s := strings.TrimSpace(string(rk))
	if !strings.HasPrefix(s, resetKeyHeader) {
		return nil, fmt.Errorf("adversary: reset key file does not start with %q", resetKeyHeader)
	}
	seed, err := hex.DecodeString(s[len(resetKeyHeader):])
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("adversary: reset key file holds no 32-byte hex seed")
	}
	return &Keys{
		Origin:      signer.Name(),
		LogSigner:   signer,
		LogVerifier: verifier,
		VRF:         sk,
		ResetKey:    ed25519.NewKeyFromSeed(seed),
	}, nil
}

// CopyDataDir copies the regular files of the data dir src (keys and
// databases) into dst (created with mode 0700), keeping their modes. The
// directory in src must be quiescent (no update in flight): bbolt files are
// consistent on disk after every commit, so a copy taken between epochs is
// a valid data dir holding the same history.
func CopyDataDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// Fork copies the quiescent data dir of a running honest directory into
// forkDir and opens a second directory.Server there with cfg (DataDir is
// set to forkDir). Both then hold the same history and keys; whatever each
// is given next makes their histories diverge, both validly signed.
func Fork(honestDir, forkDir string, cfg directory.Config) (*directory.Server, error) {
	if err := CopyDataDir(honestDir, forkDir); err != nil {
		return nil, fmt.Errorf("adversary: copying data dir: %w", err)
	}
	cfg.DataDir = forkDir
	return directory.Open(cfg)
}
