// Package depsanchor pins the chosen dependencies in go.mod while the
// packages that use them are being written. It is removed once they are.
package depsanchor

import (
	_ "filippo.io/edwards25519"
	_ "github.com/google/trillian"
	_ "github.com/google/trillian/client"
	_ "github.com/google/trillian/types"
	_ "github.com/spf13/cobra"
	_ "github.com/transparency-dev/merkle/compact"
	_ "github.com/transparency-dev/merkle/proof"
	_ "github.com/transparency-dev/merkle/rfc6962"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/crypto/curve25519"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/mod/sumdb/note"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/status"
	_ "google.golang.org/protobuf/proto"
	_ "rsc.io/qr"
)
