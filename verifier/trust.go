package verifier

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/vrf"
)

// TrustFile is the JSON form of a client's trust configuration: the keys of
// one directory and the witness policy. `keyline serve` writes the keys of a
// new directory to trust.json in its data dir; clients get it out of band.
//
//	{
//	  "origin": "keyline.example/dir",
//	  "log_key": "<note vkey of the log>",
//	  "vrf_key": "<base64 32-byte ECVRF public key>",
//	  "reset_key": "<base64 32-byte Ed25519 public key>",
//	  "witnesses": ["<cosignature/v1 vkey>", ...],
//	  "witness_quorum": 2,
//	  "max_checkpoint_age": "24h",
//	  "reset_window": "72h"
//	}
//
// reset_window is the shortest reset window clients accept: a directory
// reset is logged pending and may take effect only that long after it was
// logged (default DefaultResetWindow, 72h).
type TrustFile struct {
	Origin           string   `json:"origin"`
	LogKey           string   `json:"log_key"`
	VRFKey           string   `json:"vrf_key"`
	ResetKey         string   `json:"reset_key"`
	Witnesses        []string `json:"witnesses,omitempty"`
	WitnessQuorum    int      `json:"witness_quorum"`
	MaxCheckpointAge string   `json:"max_checkpoint_age,omitempty"`
	ResetWindow      string   `json:"reset_window,omitempty"`
}

// DefaultResetWindow is the reset window when the trust file does not
// name one.
const DefaultResetWindow = devices.DefaultResetWindow

// DefaultMaxCheckpointAge bounds how old the newest epoch a client accepts
// may be when the trust file does not say.
const DefaultMaxCheckpointAge = 24 * time.Hour

// ErrTrustConfig is wrapped by every error about a trust configuration.
var ErrTrustConfig = errors.New("verifier: bad trust configuration")

// Trust is a parsed, checked trust configuration.
type Trust struct {
	Origin    string
	Log       note.Verifier
	VRF       *vrf.PublicKey
	ResetKey  ed25519.PublicKey
	Witnesses []*cosign.Verifier
	// Quorum is how many distinct witnesses must have cosigned a checkpoint
	// for clients to accept it (0: none required).
	Quorum int
	// MaxAge bounds how old the checkpoint's epoch timestamp may be.
	MaxAge time.Duration
	// ResetWindow is the shortest window between a reset being logged
	// and taking effect that clients accept (0: DefaultResetWindow).
	ResetWindow time.Duration
}

// MinResetWindow returns ResetWindow, or DefaultResetWindow if it is 0.
func (t *Trust) MinResetWindow() time.Duration { return t.resetWindow() }

func (t *Trust) resetWindow() time.Duration {
	if t.ResetWindow <= 0 {
		return DefaultResetWindow
	}
	return t.ResetWindow
}

// ParseTrust parses and checks a trust file.
func ParseTrust(data []byte) (*Trust, error) {
	var f TrustFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTrustConfig, err)
	}
	return f.Trust()
}

// LoadTrust reads and parses a trust file.
func LoadTrust(path string) (*Trust, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTrustConfig, err)
	}
	t, err := ParseTrust(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Trust checks f and returns the parsed configuration.
func (f *TrustFile) Trust() (*Trust, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrTrustConfig}, args...)...)
	}
	if f.Origin == "" {
		return nil, bad("origin is empty")
	}
	lv, err := klog.NewNoteVerifier(f.LogKey)
	if err != nil {
		return nil, bad("log_key: %v", err)
	}
	lv = ed25519NoteVerifier(lv, f.LogKey)
	if lv.Name() != f.Origin {
		return nil, bad("log_key is named %q, want the origin %q", lv.Name(), f.Origin)
	}
	vb, err := klog.DecodeBase64(f.VRFKey)
	if err != nil {
		return nil, bad("vrf_key is not base64: %v", err)
	}
	vk, err := vrf.NewPublicKey(vb)
	if err != nil {
		return nil, bad("vrf_key: %v", err)
	}
	rb, err := klog.DecodeBase64(f.ResetKey)
	if err != nil || len(rb) != ed25519.PublicKeySize {
		return nil, bad("reset_key must be a base64 32-byte Ed25519 public key")
	}
	t := &Trust{Origin: f.Origin, Log: lv, VRF: vk, ResetKey: ed25519.PublicKey(rb), Quorum: f.WitnessQuorum, MaxAge: DefaultMaxCheckpointAge}
	seen := map[uint32]bool{lv.KeyHash(): true}
	for i, w := range f.Witnesses {
		v, err := cosign.NewVerifierFromVkey(w)
		if err != nil {
			return nil, bad("witnesses[%d]: %v", i, err)
		}
		if seen[v.KeyHash()] {
			return nil, bad("witnesses[%d]: key ID %08x listed twice (or equal to the log's)", i, v.KeyHash())
		}
		seen[v.KeyHash()] = true
		t.Witnesses = append(t.Witnesses, v)
	}
	if f.WitnessQuorum < 0 || f.WitnessQuorum > len(t.Witnesses) {
		return nil, bad("witness_quorum %d is not between 0 and the %d witnesses listed", f.WitnessQuorum, len(t.Witnesses))
	}
	if f.MaxCheckpointAge != "" {
		d, err := time.ParseDuration(f.MaxCheckpointAge)
		if err != nil || d <= 0 {
			return nil, bad("max_checkpoint_age %q is not a positive duration", f.MaxCheckpointAge)
		}
		t.MaxAge = d
	}
	t.ResetWindow = DefaultResetWindow
	if f.ResetWindow != "" {
		d, err := time.ParseDuration(f.ResetWindow)
		if err != nil || d < time.Second || d%time.Second != 0 {
			return nil, bad("reset_window %q is not a positive whole number of seconds", f.ResetWindow)
		}
		t.ResetWindow = d
	}
	return t, nil
}

// Errors from OpenCheckpoint.
var (
	ErrCheckpointSignature = errors.New("verifier: checkpoint not signed by the directory's log key")
	ErrWitnessQuorum       = errors.New("verifier: checkpoint lacks the required witness cosignatures")
)

// VerifiedCheckpoint is a checkpoint whose log signature and witness quorum
// have been checked.
type VerifiedCheckpoint struct {
	klog.Checkpoint
	// Note is the signed note as received; Cosigners lists the names of the
	// trusted witnesses whose cosignatures verified.
	Note      []byte
	Cosigners []string
}

// OpenCheckpoint verifies a signed checkpoint against the trust
// configuration: the log's signature, the origin, and at least Quorum valid
// cosignatures from distinct trusted witnesses. It fails closed: anything it
// cannot verify is an error.
func (t *Trust) OpenCheckpoint(signed []byte) (*VerifiedCheckpoint, error) {
	verifiers := []note.Verifier{t.Log}
	for _, w := range t.Witnesses {
		verifiers = append(verifiers, w)
	}
	n, err := klog.OpenNote(signed, note.VerifierList(verifiers...))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpointSignature, err)
	}
	var logSigned bool
	var cosigners []string
	for _, s := range n.Sigs {
		if s.Hash == t.Log.KeyHash() && s.Name == t.Log.Name() {
			logSigned = true
			continue
		}
		cosigners = append(cosigners, s.Name)
	}
	if !logSigned {
		return nil, ErrCheckpointSignature
	}
	if len(cosigners) < t.Quorum {
		return nil, fmt.Errorf("%w: %d of %d required (valid: %v)", ErrWitnessQuorum, len(cosigners), t.Quorum, cosigners)
	}
	c, err := klog.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	if c.Origin != t.Origin {
		return nil, fmt.Errorf("%w: origin %q, want %q", ErrCheckpointSignature, c.Origin, t.Origin)
	}
	return &VerifiedCheckpoint{Checkpoint: c, Note: signed, Cosigners: cosigners}, nil
}

// ed25519NoteVerifier returns v, the note.Verifier of the verifier key
// vkey, with its Verify done by a devices.Ed25519Verifier if vkey is an
// Ed25519 key (algorithm byte 1 and a 32-byte key, as note.NewVerifier
// parses it): the same result as note's ed25519.Verify, at about 0.7 of
// its cost. Any other key's v is returned as it is.
func ed25519NoteVerifier(v note.Verifier, vkey string) note.Verifier {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return v
	}
	key, err := klog.DecodeBase64(parts[2])
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 1 {
		return v
	}
	ev, err := devices.NewEd25519Verifier(key[1:])
	if err != nil {
		return v
	}
	return &fastNoteVerifier{Verifier: v, ed: ev}
}

// A fastNoteVerifier is a note.Verifier whose Ed25519 signatures are
// checked by a devices.Ed25519Verifier (the key decoded once).
type fastNoteVerifier struct {
	note.Verifier
	ed *devices.Ed25519Verifier
}

// Verify reports whether sig is the key's signature of msg.
func (v *fastNoteVerifier) Verify(msg, sig []byte) bool {
	return v.ed.Verify(msg, sig)
}
