package cli

import (
	"context"

	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/verifier"
)

// dirConn is what the CLI needs from a directory connection: the verifier
// Source (every answer is verified) plus publishing. *client.Client
// implements it.
type dirConn interface {
	verifier.Source
	Update(ctx context.Context, accountState []byte) (*client.UpdateResult, error)
	Close() error
}

// dial connects (lazily) to the directory at --server.
func (a *app) dial(ctx context.Context) (dirConn, error) {
	return client.Dial(a.server)
}
