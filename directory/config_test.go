package directory

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// A directory whose clients' max_checkpoint_age is not longer than its
// EmptyEpochInterval would serve checkpoints that every client rejects as
// stale whenever no updates arrive; Open refuses such a config.
func TestConfigMaxCheckpointAgeVsEmptyEpochInterval(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name      string
		maxAge    string
		empty     time.Duration
		epoch     time.Duration
		wantErr   string // "" means accepted
		wantEmpty time.Duration
	}{
		{name: "defaults", wantEmpty: DefaultEmptyEpochInterval},
		{name: "default empty interval, 10m age", maxAge: "10m", wantErr: "MaxCheckpointAge 10m0s is not longer than EmptyEpochInterval 1h0m0s"},
		{name: "equal", maxAge: "1h", empty: time.Hour, wantErr: "is not longer than EmptyEpochInterval"},
		{name: "default age, longer interval", empty: 25 * time.Hour, wantErr: "MaxCheckpointAge 24h0m0s is not longer than EmptyEpochInterval 25h0m0s"},
		{name: "just longer", maxAge: "1h0m1s", empty: time.Hour, wantEmpty: time.Hour},
		{name: "short test values", maxAge: "2s", empty: 200 * time.Millisecond, epoch: 10 * time.Millisecond, wantEmpty: 200 * time.Millisecond},
		// EmptyEpochInterval is raised to EpochInterval; the check uses
		// the raised value.
		{name: "raised empty interval", maxAge: "2s", empty: time.Second, epoch: 3 * time.Second, wantErr: "EmptyEpochInterval 3s"},
		{name: "not a duration", maxAge: "soon", wantErr: `MaxCheckpointAge "soon" is not a positive duration`},
		{name: "negative", maxAge: "-1h", wantErr: "not a positive duration"},
		{name: "zero", maxAge: "0s", wantErr: "not a positive duration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{DataDir: dir, MaxCheckpointAge: c.maxAge, EmptyEpochInterval: c.empty, EpochInterval: c.epoch}
			got, err := cfg.withDefaults()
			if c.wantErr != "" {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("withDefaults: got %v, want ErrConfig containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("withDefaults: %v", err)
			}
			if got.EmptyEpochInterval != c.wantEmpty {
				t.Fatalf("EmptyEpochInterval %v, want %v", got.EmptyEpochInterval, c.wantEmpty)
			}
			if d, _ := time.ParseDuration(got.MaxCheckpointAge); d <= got.EmptyEpochInterval {
				t.Fatalf("accepted MaxCheckpointAge %q with EmptyEpochInterval %v", got.MaxCheckpointAge, got.EmptyEpochInterval)
			}
		})
	}
	// Open reports the same error, before it creates anything.
	sub := dir + "/never-created"
	_, err := Open(Config{DataDir: sub, MaxCheckpointAge: "30m", NoSync: true})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("Open with MaxCheckpointAge 30m and the default EmptyEpochInterval: got %v, want ErrConfig", err)
	}
	if _, err := os.Stat(sub); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a refused config created its data dir (stat: %v)", err)
	}
}

func TestConfigResetWindow(t *testing.T) {
	c := Config{DataDir: t.TempDir()}
	cfg, err := c.withDefaults()
	if err != nil || cfg.ResetWindow != 72*time.Hour {
		t.Fatalf("default reset window: %v %v", cfg.ResetWindow, err)
	}
	for _, w := range []time.Duration{-time.Second, 1500 * time.Millisecond, time.Millisecond} {
		c := Config{DataDir: t.TempDir(), ResetWindow: w}
		if _, err := c.withDefaults(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ResetWindow") {
			t.Fatalf("ResetWindow %v: got %v", w, err)
		}
	}
}
