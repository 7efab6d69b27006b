package devices

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxUserIDLen is the maximum length of a user id in bytes.
const MaxUserIDLen = 64

// NormalizeUserID returns the canonical form of a user id: it trims
// surrounding whitespace and lowercases ASCII letters. The result must be
// 1..64 bytes of [a-z0-9._@+-]; anything else is rejected with an error
// wrapping ErrUserID that names the offending character.
//
// Encoders and decoders accept only canonical ids (NormalizeUserID(id) == id).
func NormalizeUserID(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if err := checkUserID(id); err != nil {
		return "", err
	}
	return id, nil
}

// checkUserID reports whether id is canonical.
func checkUserID(id string) error {
	if len(id) == 0 {
		return fmt.Errorf("%w: empty", ErrUserID)
	}
	if len(id) > MaxUserIDLen {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrUserID, len(id), MaxUserIDLen)
	}
	for i, r := range id {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.', r == '_', r == '@', r == '+', r == '-':
		case 'A' <= r && r <= 'Z':
			return fmt.Errorf("%w: %q has upper-case %q at byte %d (not canonical; use NormalizeUserID)", ErrUserID, id, r, i)
		default:
			if r == utf8.RuneError {
				return fmt.Errorf("%w: invalid UTF-8 at byte %d", ErrUserID, i)
			}
			return fmt.Errorf("%w: %q has disallowed character %q at byte %d (allowed: a-z 0-9 . _ @ + -)", ErrUserID, id, r, i)
		}
	}
	return nil
}
