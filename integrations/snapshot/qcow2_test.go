package snapshot_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/integrations/snapshot"
	"github.com/rollguard/rollguard/ports"
)

// needTool returns the path of a program the end-to-end test needs: the
// test fails without it when ROLLGUARD_E2E=1, and is skipped otherwise.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("%s is required with ROLLGUARD_E2E=1 (Debian package qemu-utils): %v", name, err)
		}
		t.Skipf("%s not installed (Debian package qemu-utils); set ROLLGUARD_E2E=1 to make this a failure", name)
	}
	return p
}

// qemuIO runs one qemu-io command on a qcow2 image and returns its output
// and whether it succeeded (qemu-io exits 1 when a pattern does not match).
func qemuIO(t *testing.T, qemuIOPath, image, command string) (string, bool) {
	t.Helper()
	out, err := exec.Command(qemuIOPath, "-f", "qcow2", "-c", command, image).CombinedOutput()
	if err != nil {
		if _, exit := err.(*exec.ExitError); !exit {
			t.Fatalf("qemu-io %q: %v", command, err)
		}
	}
	ok := err == nil && !strings.Contains(string(out), "Pattern verification failed")
	return string(out), ok
}

// TestQcow2SnapshotRestoresTheImage takes real qcow2 internal snapshots of
// two "hosts" (one image each, found through {{.Host.Address}}), changes
// the images as an apply would, restores them, and reads the original
// bytes back; then deletes the snapshots.
func TestQcow2SnapshotRestoresTheImage(t *testing.T) {
	qemuImg := needTool(t, "qemu-img")
	qemuIOPath := needTool(t, "qemu-io")
	dir := t.TempDir()
	hosts := []ports.Host{
		{Name: "vm-1", Address: filepath.Join(dir, "vm-1.qcow2")},
		{Name: "vm-2", Address: filepath.Join(dir, "vm 2 with spaces.qcow2")},
	}
	for _, h := range hosts {
		if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", h.Address, "1M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create %s: %v\n%s", h.Address, err, out)
		}
		if out, ok := qemuIO(t, qemuIOPath, h.Address, "write -P 0xAA 0 64k"); !ok {
			t.Fatalf("write the original bytes into %s: %s", h.Address, out)
		}
	}
	s, err := snapshot.New(snapshot.Config{
		Create:  []string{qemuImg, "snapshot", "-c", "{{.Snapshot}}", "{{.Host.Address}}"},
		Restore: []string{qemuImg, "snapshot", "-a", "{{.Snapshot}}", "{{.Host.Address}}"},
		Delete:  []string{qemuImg, "snapshot", "-d", "{{.Snapshot}}", "{{.Host.Address}}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const runID = "0f3c9a"
	requireOK := func(step string, res []ports.SnapshotResult) {
		t.Helper()
		if len(res) != len(hosts) {
			t.Fatalf("%s: %d results for %d hosts", step, len(res), len(hosts))
		}
		for i, r := range res {
			if !r.OK || r.Host != hosts[i].Name || r.Snapshot != "rollguard-"+runID {
				t.Fatalf("%s on %s: %+v", step, hosts[i].Name, r)
			}
		}
	}
	snapshots := func(image string) string {
		t.Helper()
		out, err := exec.Command(qemuImg, "snapshot", "-l", image).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img snapshot -l %s: %v\n%s", image, err, out)
		}
		return string(out)
	}

	requireOK("create", s.Create(ctx, hosts, runID))
	for _, h := range hosts {
		if list := snapshots(h.Address); !strings.Contains(list, "rollguard-"+runID) {
			t.Fatalf("%s has no snapshot rollguard-%s after create:\n%s", h.Name, runID, list)
		}
		// The "apply": new bytes over the original ones.
		if out, ok := qemuIO(t, qemuIOPath, h.Address, "write -P 0x55 0 64k"); !ok {
			t.Fatalf("apply on %s: %s", h.Name, out)
		}
		if _, ok := qemuIO(t, qemuIOPath, h.Address, "read -P 0xAA 0 64k"); ok {
			t.Fatalf("%s still reads the original bytes after the apply: the test would prove nothing", h.Name)
		}
	}

	requireOK("restore", s.Restore(ctx, hosts, runID))
	for _, h := range hosts {
		if out, ok := qemuIO(t, qemuIOPath, h.Address, "read -P 0xAA 0 64k"); !ok {
			t.Errorf("%s does not read the original 0xAA bytes after restore:\n%s", h.Name, out)
		}
	}

	requireOK("delete", s.Delete(ctx, hosts, runID))
	for _, h := range hosts {
		if list := snapshots(h.Address); strings.Contains(list, "rollguard-"+runID) {
			t.Errorf("%s still lists the snapshot after delete:\n%s", h.Name, list)
		}
	}

	// Restoring a snapshot that no longer exists is a failure that says
	// which host and why.
	res := s.Restore(ctx, hosts[:1], runID)
	if res[0].OK || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "vm-1") || res[0].Output == "" {
		t.Errorf("restore of a deleted snapshot: %+v, want a failure naming vm-1 with qemu-img's output", res[0])
	}
}
