package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/keyline/keyline/verifier/cosign"
)

// vkeyOfSkey returns the vkey of a cosignature/v1 skey
// "PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>". (verifier/cosign
// has no accessor for a Signer's public key.)
func vkeyOfSkey(skey string) (string, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	name, rest, ok2 := strings.Cut(rest, "+")
	_, key, ok3 := strings.Cut(rest, "+")
	if !ok || !ok2 || !ok3 {
		return "", errors.New("not a PRIVATE+KEY+<name>+<id>+<key> skey")
	}
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != cosign.AlgCosignatureV1 {
		return "", errors.New("the key is not a cosignature/v1 Ed25519 seed")
	}
	_, vkey, err := cosign.EncodeKeys(name, ed25519.NewKeyFromSeed(b[1:]))
	return vkey, err
}
