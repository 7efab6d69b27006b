package directory

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/internal/atomicfile"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vrf"
)

// Files in the data dir.
const (
	FileLogKey     = "log.skey"       // note signer key of the log (0600)
	FileLogVKey    = "log.vkey"       // note verifier key of the log (0644)
	FileVRFSeed    = "vrf.seed"       // VRF seed file (vrf.LoadOrCreateSeedFile, 0600)
	FileResetKey   = "reset.key"      // Ed25519 reset key seed (0600)
	FileAdminToken = "admin.token"    // bearer token for Reset (0600)
	FileTrust      = "trust.json"     // verifier.TrustFile for clients (0644)
	FileLogDB      = "log.db"         // embedded log (log/embedded)
	FileDirDB      = "directory.db"   // map + account index
	FileCheckpoint = "checkpoints.db" // checkpoint store for the Trillian backend
)

// ErrKeyFile is wrapped by errors about key files in the data dir.
var ErrKeyFile = errors.New("directory: bad key file")

const resetKeyHeader = "keyline-reset-seed-v1 "

// keys are the directory's secrets.
type keys struct {
	origin    string
	signer    note.Signer
	verifier  note.Verifier
	vkey      string
	vrf       *vrf.PrivateKey
	resetKey  ed25519.PrivateKey
	adminHash []byte // the admin token
}

// createOrLoad returns the contents of the secret file at path, creating it
// with gen (mode 0600, exclusive, fsynced) if it does not exist. Files
// readable or writable by group or others are refused.
func createOrLoad(path string, gen func() ([]byte, error)) ([]byte, error) {
	b, err := readSecret(path)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	data, err := gen()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return data, atomicfile.SyncDir(filepath.Dir(path))
}

func readSecret(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; it must not be accessible by group or others (chmod 600)", ErrKeyFile, path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

func loadKeys(cfg *Config) (*keys, error) {
	dir := cfg.DataDir
	origin := cfg.Origin
	if origin == "" {
		origin = DefaultOrigin
	}
	k := &keys{}
	skey, err := createOrLoad(filepath.Join(dir, FileLogKey), func() ([]byte, error) {
		s, _, err := klog.GenerateKey(rand.Reader, origin)
		return []byte(s + "\n"), err
	})
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	k.signer, err = note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, FileLogKey, err)
	}
	k.origin = k.signer.Name()
	if cfg.Origin != "" && cfg.Origin != k.origin {
		return nil, fmt.Errorf("%w: data dir %s holds the log of origin %q, not %q", ErrConfig, dir, k.origin, cfg.Origin)
	}
	k.vkey, err = vkeyOf(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, err
	}
	k.verifier, err = klog.NewNoteVerifier(k.vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, FileLogVKey), []byte(k.vkey+"\n"), 0o644); err != nil {
		return nil, err
	}

	k.vrf, _, err = vrf.LoadOrCreateSeedFile(filepath.Join(dir, FileVRFSeed), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("VRF key: %w", err)
	}

	rk, err := createOrLoad(filepath.Join(dir, FileResetKey), func() ([]byte, error) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		return []byte(resetKeyHeader + hex.EncodeToString(seed) + "\n"), nil
	})
	if err != nil {
		return nil, fmt.Errorf("reset key: %w", err)
	}
	s := string(rk)
	if !strings.HasPrefix(s, resetKeyHeader) || !strings.HasSuffix(s, "\n") || len(s) != len(resetKeyHeader)+64+1 {
		return nil, fmt.Errorf("%w: %s is not %q followed by 64 hex digits and a newline", ErrKeyFile, FileResetKey, resetKeyHeader)
	}
	seed, err := hex.DecodeString(s[len(resetKeyHeader) : len(s)-1])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, FileResetKey, err)
	}
	k.resetKey = ed25519.NewKeyFromSeed(seed)

	if cfg.AdminToken != "" {
		k.adminHash = []byte(cfg.AdminToken)
	} else {
		tok, err := createOrLoad(filepath.Join(dir, FileAdminToken), func() ([]byte, error) {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
			return []byte(hex.EncodeToString(b) + "\n"), nil
		})
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		t := strings.TrimSpace(string(tok))
		if t == "" {
			return nil, fmt.Errorf("%w: %s is empty", ErrKeyFile, FileAdminToken)
		}
		k.adminHash = []byte(t)
	}
	return k, nil
}

// checkAdmin compares token with the admin token in constant time.
func (k *keys) checkAdmin(token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), k.adminHash) == 1
}

// vkeyOf derives the note verifier key from a note signer key
// "PRIVATE+KEY+<name>+<hash>+<base64(0x01||seed)>".
func vkeyOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", fmt.Errorf("%w: %s is not a note signer key", ErrKeyFile, FileLogKey)
	}
	raw, err := klog.DecodeBase64(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", fmt.Errorf("%w: %s holds no Ed25519 seed", ErrKeyFile, FileLogKey)
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// trustFile returns the client trust configuration of this directory.
func (s *Server) trustFile() *verifier.TrustFile {
	tf := &verifier.TrustFile{
		Origin:           s.keys.origin,
		LogKey:           s.keys.vkey,
		VRFKey:           base64.StdEncoding.EncodeToString(s.keys.vrf.Public().Bytes()),
		ResetKey:         base64.StdEncoding.EncodeToString(s.keys.resetKey.Public().(ed25519.PublicKey)),
		WitnessQuorum:    s.cfg.WitnessQuorum,
		MaxCheckpointAge: s.cfg.MaxCheckpointAge,
		ResetWindow:      s.cfg.ResetWindow.String(),
	}
	for _, w := range s.cfg.Witnesses {
		tf.Witnesses = append(tf.Witnesses, w.VKey)
	}
	return tf
}

func (s *Server) writeTrust() error {
	tf := s.trustFile()
	if _, err := tf.Trust(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.cfg.DataDir, FileTrust), append(b, '\n'), 0o644)
}
