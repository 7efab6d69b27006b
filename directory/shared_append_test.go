package directory

import (
	"context"
	"fmt"

	klog "github.com/keyline/keyline/log"
)

// appendAt appends leaves to l, which must have size leaves.
func appendAt(ctx context.Context, l klog.Backend, size uint64, leaves ...[]byte) error {
	got, err := l.Append(ctx, leaves)
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("appended at %d, want %d", got, size)
	}
	return nil
}
