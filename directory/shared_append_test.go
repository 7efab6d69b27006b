package directory

import (
	"context"

	klog "github.com/keyline/keyline/log"
)

// appendAt appends leaves to l, which must have size leaves.
func appendAt(ctx context.Context, l klog.Backend, size uint64, leaves ...[]byte) error {
	return l.Append(ctx, size, leaves)
}
