package report

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Report files and the directories WriteReport creates are readable by
// other users whatever the umask, so that actions/upload-artifact (the
// runner's user) can read what the action's container (root) wrote.
func TestWriteReportModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	base := t.TempDir()
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "rollguard-report", "run-1")
	if err := WriteReport(dir, &Report{RunID: "r1", Name: "web", Outcome: "promoted"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(base, "rollguard-report"), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want 0755", d, fi.Mode().Perm(), err)
		}
	}
	for _, f := range []string{"report.json", "report.md", "report.html"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v, want 0644", f, fi.Mode().Perm(), err)
		}
	}
	// A directory that existed keeps its mode.
	if fi, _ := os.Stat(base); fi.Mode().Perm() != 0o700 {
		t.Errorf("the existing parent's mode changed to %v", fi.Mode().Perm())
	}
}
