package log

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// A Checkpoint is a C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint):
// the origin, size and root hash of the log, optionally followed by extension
// lines. Its text is
//
//	<origin>\n<size in decimal>\n<base64 std-encoded 32-byte root>\n[<extension>\n ...]
//
// and it is published as the text of a signed note (golang.org/x/mod/sumdb/note)
// signed by the log's Ed25519 key, possibly carrying further signatures
// (witness cosignatures, C2SP tlog-cosignature).
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   [32]byte
	// Extensions are the optional lines after the root hash, without their
	// newline. Keyline's own checkpoints have none.
	Extensions []string
}

// Bounds on checkpoint text accepted by ParseCheckpoint and produced by Marshal.
const (
	MaxCheckpointSize       = 8192  // bytes of checkpoint text
	MaxCheckpointExtensions = 16    // extension lines
	MaxSignedCheckpointSize = 65536 // bytes of signed note, signatures included
)

// ErrMalformedCheckpoint is wrapped by every ParseCheckpoint and Marshal error.
var ErrMalformedCheckpoint = errors.New("malformed checkpoint")

func checkLine(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrMalformedCheckpoint, what)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformedCheckpoint, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("%w: %s contains control character %U", ErrMalformedCheckpoint, what, r)
		}
	}
	return nil
}

// Marshal returns the checkpoint text. It fails if a line is empty, holds a
// control character or invalid UTF-8, or the text is over the bounds.
func (c Checkpoint) Marshal() ([]byte, error) {
	if err := checkLine("origin", c.Origin); err != nil {
		return nil, err
	}
	if len(c.Extensions) > MaxCheckpointExtensions {
		return nil, fmt.Errorf("%w: %d extension lines, over the limit of %d", ErrMalformedCheckpoint, len(c.Extensions), MaxCheckpointExtensions)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
	for i, e := range c.Extensions {
		if err := checkLine(fmt.Sprintf("extension line %d", i+1), e); err != nil {
			return nil, err
		}
		b.WriteString(e)
		b.WriteByte('\n')
	}
	if b.Len() > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrMalformedCheckpoint, b.Len(), MaxCheckpointSize)
	}
	return b.Bytes(), nil
}

// ParseCheckpoint parses checkpoint text strictly: three required lines, a
// canonical decimal size (no sign, no leading zeros), the canonical padded
// standard base64 encoding of exactly 32 bytes, at most
// MaxCheckpointExtensions non-empty extension lines, a final newline, no
// control characters, at most MaxCheckpointSize bytes. Marshal of the result
// returns text exactly.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(text) > MaxCheckpointSize {
		return c, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrMalformedCheckpoint, len(text), MaxCheckpointSize)
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return c, fmt.Errorf("%w: text does not end in a newline", ErrMalformedCheckpoint)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("%w: %d lines, want origin, size and root hash", ErrMalformedCheckpoint, len(lines))
	}
	if len(lines)-3 > MaxCheckpointExtensions {
		return c, fmt.Errorf("%w: %d extension lines, over the limit of %d", ErrMalformedCheckpoint, len(lines)-3, MaxCheckpointExtensions)
	}
	if err := checkLine("origin", lines[0]); err != nil {
		return c, err
	}
	c.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: size %q is not a canonical decimal u64", ErrMalformedCheckpoint, lines[1])
	}
	c.Size = size
	h, err := DecodeBase64(lines[2])
	if err != nil || len(h) != 32 || base64.StdEncoding.EncodeToString(h) != lines[2] {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q is not canonical base64 of 32 bytes", ErrMalformedCheckpoint, lines[2])
	}
	copy(c.Hash[:], h)
	for i, e := range lines[3:] {
		if err := checkLine(fmt.Sprintf("extension line %d", i+1), e); err != nil {
			return Checkpoint{}, err
		}
		c.Extensions = append(c.Extensions, e)
	}
	return c, nil
}

// GenerateKey generates an Ed25519 log key named origin, returning the note
// signer key "PRIVATE+KEY+<origin>+<hash>+<base64>" and verifier key
// "<origin>+<hash>+<base64>" (see note.GenerateKey). The origin must be a
// valid note key name: non-empty, no spaces or '+'.
func GenerateKey(rand io.Reader, origin string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand, origin)
	if err != nil {
		return "", "", fmt.Errorf("log: generate key for origin %q: %w", origin, err)
	}
	return skey, vkey, nil
}

// SignCheckpoint returns c as a note signed by signer. The signer's name
// must be c's origin.
func SignCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	if signer.Name() != c.Origin {
		return nil, fmt.Errorf("log: sign checkpoint: signer %q is not the origin %q", signer.Name(), c.Origin)
	}
	text, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("log: sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies that msg is a note signed by verifier, whose name
// must be origin, and parses its text as a checkpoint with that origin.
// Signatures by other keys (such as witness cosignatures) are allowed and
// returned unverified in the note's UnverifiedSigs for the caller to check.
func OpenCheckpoint(msg []byte, verifier note.Verifier, origin string) (Checkpoint, *note.Note, error) {
	if verifier == nil {
		return Checkpoint{}, nil, errors.New("log: open checkpoint: no verifier")
	}
	if verifier.Name() != origin {
		return Checkpoint{}, nil, fmt.Errorf("log: open checkpoint: verifier %q is not the origin %q", verifier.Name(), origin)
	}
	if len(msg) > MaxSignedCheckpointSize {
		return Checkpoint{}, nil, fmt.Errorf("log: open checkpoint: %w: signed note of %d bytes, over the limit of %d", ErrMalformedCheckpoint, len(msg), MaxSignedCheckpointSize)
	}
	n, err := OpenNote(msg, note.VerifierList(verifier))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("log: open checkpoint: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("log: open checkpoint: %w", err)
	}
	if c.Origin != origin {
		return Checkpoint{}, nil, fmt.Errorf("log: open checkpoint: %w: origin %q, want %q", ErrMalformedCheckpoint, c.Origin, origin)
	}
	return c, n, nil
}
