package sshfleet

import (
	"os"
	"testing"
)

// ForTest starts a fleet for t in t.TempDir() (cfg.Dir, when empty) and
// removes it when t ends, passed or failed. When this machine cannot run
// one (not root, sshd missing) the test is skipped with what is missing,
// or fails when ROLLGUARD_E2E=1 asks for every end-to-end test to run.
func ForTest(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but %v", err)
		}
		t.Skip(err)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	f, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}
