package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/runner"
)

// A lock whose holder died without releasing it is taken over, and the
// run says so without -v: the operator learns that a run crashed.
func TestStaleLockTakeoverWarns(t *testing.T) {
	dir := t.TempDir()
	spec := &runner.Spec{Name: "web", State: runner.State{Store: "local", Dir: dir}}
	st, err := openState(t.Context(), spec, newLogger(false))
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := json.Marshal(ports.Holder{Host: "ci-7", PID: 4242, RunID: "20240101T120000Z-deadbeef", Since: time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)})
	if err := os.WriteFile(filepath.Join(dir, "locks", "web.holder"), dead, 0o600); err != nil {
		t.Fatal(err)
	}
	var said []string
	lease, err := acquireLock(t.Context(), st, spec, "new-run", 0, func(s string) { said = append(said, s) })
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(t.Context())
	msg := strings.Join(said, "\n")
	for _, want := range []string{"warning", "took over", "20240101T120000Z-deadbeef", "ci-7", "4242"} {
		if !strings.Contains(msg, want) {
			t.Errorf("taking over a stale lock said %q; want it to mention %q", msg, want)
		}
	}
	// A lock taken fresh says nothing.
	lease.Release(t.Context())
	said = nil
	lease2, err := acquireLock(t.Context(), st, spec, "next-run", 0, func(s string) { said = append(said, s) })
	if err != nil {
		t.Fatal(err)
	}
	defer lease2.Release(t.Context())
	if len(said) > 0 {
		t.Errorf("a free lock: said %q", said)
	}
}
