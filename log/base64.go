package log

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ErrNonCanonicalBase64 is wrapped by every refusal of a base64 value that
// is not the canonical encoding of its bytes.
var ErrNonCanonicalBase64 = errors.New("not canonical base64")

// DecodeBase64 decodes s, standard base64 with padding (RFC 4648 section 4),
// and accepts only the canonical encoding: the one EncodeToString returns
// for the decoded bytes. The standard decoder also accepts (even in Strict
// mode) embedded CR and LF, and (outside Strict mode) non-zero padding bits,
// so one value would have several encodings; Keyline gives every key,
// signature and hash exactly one.
func DecodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNonCanonicalBase64, err)
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("%w: %q is not the canonical encoding of its %d bytes", ErrNonCanonicalBase64, truncate(s), len(b))
	}
	return b, nil
}

func truncate(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// CheckNoteSignatures checks that every signature line of the signed note
// msg ("— <name> <base64>", after the last blank line) carries canonical
// base64 (DecodeBase64): note.Open decodes signatures leniently, so call
// this before it. Lines that are not signature lines are left to note.Open
// to refuse.
func CheckNoteSignatures(msg []byte) error {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil
	}
	for _, line := range strings.Split(string(msg[i+2:]), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			continue
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		if _, err := DecodeBase64(b64); err != nil {
			return fmt.Errorf("signature by %q: %w", name, err)
		}
	}
	return nil
}

// NewNoteVerifier is note.NewVerifier for a verifier key
// "<name>+<hex hash>+<base64 key>" whose key is canonical base64.
func NewNoteVerifier(vkey string) (note.Verifier, error) {
	if parts := strings.SplitN(vkey, "+", 3); len(parts) == 3 {
		if _, err := DecodeBase64(parts[2]); err != nil {
			return nil, fmt.Errorf("verifier key: %w", err)
		}
	}
	return note.NewVerifier(vkey)
}

// OpenNote is note.Open after CheckNoteSignatures.
func OpenNote(msg []byte, known note.Verifiers) (*note.Note, error) {
	if err := CheckNoteSignatures(msg); err != nil {
		return nil, err
	}
	return note.Open(msg, known)
}
