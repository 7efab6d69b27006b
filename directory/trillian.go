package directory

import (
	"context"
	"time"

	"github.com/keyline/keyline/log/trillian"
)

// trillianDialWait bounds how long Open retries reaching the Trillian log
// server (and its database) before it gives up.
const trillianDialWait = 30 * time.Second

// dialTrillian connects to the configured Trillian tree, retrying with
// backoff for up to trillianDialWait while the log server or its database
// is down or restarting. Errors that will not go away (a tree that is not a
// PREORDERED_LOG, a missing tree) fail at once.
func dialTrillian(ctx context.Context, c *Config) (*trillian.Backend, error) {
	opts := &trillian.Options{IntegrationTimeout: c.TrillianIntegrationTimeout}
	deadline := time.Now().Add(trillianDialWait)
	backoff := resyncFirstBackoff
	for {
		b, err := trillian.Dial(ctx, c.TrillianAddr, c.TrillianTreeID, opts)
		if err == nil {
			return b, nil
		}
		if !trillian.Transient(err) || time.Now().Add(backoff).After(deadline) {
			return nil, err
		}
		c.Logf("directory: Trillian at %s not ready, retrying in %v: %v", c.TrillianAddr, backoff, err)
		time.Sleep(backoff)
		backoff = min(backoff*2, resyncMaxBackoff)
	}
}
