package localstate

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

var since = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newLocker(t *testing.T, dir string) *Locker {
	t.Helper()
	l, err := NewLocker(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockInOneProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLocker(t, dir)
	first := ports.Holder{Host: "ci-1", PID: 101, RunID: "run-a", Since: since, Where: "https://ci/job/1"}
	lease, err := l.Acquire(ctx, "web", first)
	if err != nil {
		t.Fatal(err)
	}
	if _, took := lease.(*Lease).TookOver(); took {
		t.Error("a fresh lock reports a takeover")
	}
	select {
	case <-lease.Lost():
		t.Fatal("a local lease is lost")
	default:
	}

	// A second locker on the same directory (another run of this process)
	// is refused with the holder's details.
	_, err = newLocker(t, dir).Acquire(ctx, "web", ports.Holder{Host: "ci-2", PID: 202, RunID: "run-b"})
	var locked *ports.LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second Acquire: %v, want *ports.LockedError", err)
	}
	if locked.Name != "web" || locked.Holder != first {
		t.Errorf("refusal names %+v, want %+v", locked, first)
	}

	// Another rollout's lock is independent.
	other, err := l.Acquire(ctx, "db", ports.Holder{RunID: "run-c"})
	if err != nil {
		t.Fatalf("lock of another rollout: %v", err)
	}
	defer other.Release(ctx)

	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "locks", "web.holder")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("holder file left after Release: %v", err)
	}
	again, err := l.Acquire(ctx, "web", ports.Holder{RunID: "run-d"})
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if _, took := again.(*Lease).TookOver(); took {
		t.Error("a released lock is reported stale")
	}
	again.Release(ctx)

	for _, bad := range []string{"", "a/b", ".hidden", ".."} {
		if _, err := l.Acquire(ctx, bad, first); err == nil {
			t.Errorf("Acquire(%q) accepted", bad)
		}
	}
}

const helperEnv = "ROLLGUARD_LOCK_HELPER_DIR"

// TestLockHelperProcess is not a test: run by the tests below as another
// process, it takes the lock, says "locked" on stdout, and holds the lock
// until its stdin closes or it is killed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for the lock tests")
	}
	l, err := NewLocker(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	lease, err := l.Acquire(context.Background(), "web", ports.Holder{Host: host, PID: os.Getpid(), RunID: "helper-run", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	io.Copy(io.Discard, os.Stdin)
	if err := lease.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// startHolder runs TestLockHelperProcess holding dir's "web" lock and
// returns once it holds it.
func startHolder(t *testing.T, dir string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q (%v), want locked", line, err)
	}
	return cmd, stdin
}

func TestLockAcrossProcesses(t *testing.T) {
	tests := []struct {
		name string
		// end stops the helper: released cleanly, or killed so that its
		// holder file is left behind.
		end       func(cmd *exec.Cmd, stdin io.WriteCloser) error
		wantStale bool
	}{
		{"holder releases", func(cmd *exec.Cmd, stdin io.WriteCloser) error {
			stdin.Close()
			return cmd.Wait()
		}, false},
		{"holder is killed", func(cmd *exec.Cmd, _ io.WriteCloser) error {
			cmd.Process.Kill()
			cmd.Wait()
			return nil
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			cmd, stdin := startHolder(t, dir)
			pid := cmd.Process.Pid

			l := newLocker(t, dir)
			_, err := l.Acquire(ctx, "web", ports.Holder{Host: "here", PID: os.Getpid(), RunID: "mine"})
			var locked *ports.LockedError
			if !errors.As(err, &locked) {
				t.Fatalf("Acquire while another process holds the lock: %v, want *ports.LockedError", err)
			}
			if locked.Holder.PID != pid || locked.Holder.RunID != "helper-run" || !locked.Holder.Since.Equal(since) {
				t.Errorf("refusal names %+v, want pid %d run helper-run", locked.Holder, pid)
			}
			if msg := err.Error(); !strings.Contains(msg, "helper-run") || !strings.Contains(msg, "pid "+strconv.Itoa(pid)) {
				t.Errorf("refusal message %q does not name the run and pid", msg)
			}

			if err := tt.end(cmd, stdin); err != nil {
				t.Fatalf("helper: %v", err)
			}
			_, holderErr := os.Stat(filepath.Join(dir, "locks", "web.holder"))
			if leftBehind := holderErr == nil; leftBehind != tt.wantStale {
				t.Fatalf("holder file left behind: %v, want %v", leftBehind, tt.wantStale)
			}

			lease, err := l.Acquire(ctx, "web", ports.Holder{Host: "here", PID: os.Getpid(), RunID: "mine"})
			if err != nil {
				t.Fatalf("Acquire after the holder ended: %v", err)
			}
			defer lease.Release(ctx)
			prev, took := lease.(*Lease).TookOver()
			if took != tt.wantStale || (took && prev.PID != pid) {
				t.Errorf("TookOver = %+v, %v; want stale %v of pid %d", prev, took, tt.wantStale, pid)
			}
			h, err := readHolder(filepath.Join(dir, "locks", "web.holder"))
			if err != nil || h.RunID != "mine" {
				t.Errorf("holder file after Acquire: %+v, %v; want run mine", h, err)
			}
		})
	}
}
