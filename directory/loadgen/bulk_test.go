package loadgen_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/loadgen"
)

// TestBulk: bulk accounts are valid creates (every signature and rule),
// have their own user ids and SigningKeyCerts, and can be updated.
func TestBulk(t *testing.T) {
	b, err := loadgen.NewBulk("bulk")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var prev *devices.AccountState
	for i := range 3 {
		st, err := b.Create(i, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := devices.VerifyCreate(st); err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
		if st.UserID != fmt.Sprintf("bulk-%d", i) || st.SigningKey.UserID != st.UserID {
			t.Fatalf("account %d is %q with a cert for %q", i, st.UserID, st.SigningKey.UserID)
		}
		if prev != nil && prev.SigningKey.Signature == st.SigningKey.Signature {
			t.Fatal("two accounts share a SigningKeyCert signature")
		}
		a, err := b.Account(i)
		if err != nil {
			t.Fatal(err)
		}
		next, err := a.Touch(st, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := devices.VerifyTransition(st, next); err != nil {
			t.Fatalf("account %d update: %v", i, err)
		}
		prev = st
	}
	if _, err := b.Create(0, now); err != nil {
		t.Fatal(err)
	}
}
