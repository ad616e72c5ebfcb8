package ansible_test

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rollguard/rollguard/integrations/ansible"
	"github.com/rollguard/rollguard/ports"
)

// A check run (ApplyRequest.Check) writes nothing on any host, not even
// app.conf.prev, and says per host which tasks would change which files
// and by how many lines; the same request without Check then changes
// exactly what the check said.
func TestApplyCheckWritesNothing(t *testing.T) {
	requireAnsible(t)
	f, hosts := fleet(t, 3)
	a := ansible.New(ansible.Config{})
	sums := func() map[string][32]byte {
		m := map[string][32]byte{}
		for _, h := range f.Hosts() {
			data, err := os.ReadFile(filepath.Join(h.Dir, "app.conf"))
			if err != nil {
				t.Fatal(err)
			}
			m[h.Name] = sha256.Sum256(data)
		}
		return m
	}
	before := sums()
	req := ports.ApplyRequest{
		Playbook:  filepath.Join(playbooks, "site.yml"),
		Inventory: hosts,
		Limit:     []string{"web-1", "web-2"},
		ExtraVars: map[string]any{"version": "v7", "latency_factor": 1.5},
		Check:     true,
	}
	res, err := a.Apply(t.Context(), req, nil)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if after := sums(); !maps.Equal(before, after) {
		t.Errorf("a check run changed app.conf")
	}
	for _, h := range f.Hosts() {
		if n := f.Writes(h.Name); n != 0 {
			t.Errorf("%s: %d writes during a check", h.Name, n)
		}
		if _, err := os.Stat(filepath.Join(h.Dir, "app.conf.prev")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s has an app.conf.prev after a check (%v)", h.Name, err)
		}
	}
	if len(res.Hosts) != 2 {
		t.Fatalf("results %+v: want the 2 limited hosts", res.Hosts)
	}
	for i, hr := range res.Hosts {
		dir := f.Hosts()[i].Dir
		want := []ports.TaskChange{
			{Task: "Save the previous app.conf as app.conf.prev", Files: []ports.FileChange{{Path: filepath.Join(dir, "app.conf.prev")}}},
			// The header comment, version and latency_factor change:
			// three lines out, three in.
			{Task: "Write app.conf", Files: []ports.FileChange{{Path: filepath.Join(dir, "app.conf"), Added: 3, Removed: 3}}},
		}
		if hr.Status != ports.HostChanged || !slices.EqualFunc(hr.Changes, want, equalChange) {
			t.Errorf("%s: %+v, want changed with %+v", hr.Host, hr, want)
		}
	}

	// The apply changes what the check said it would.
	req.Check = false
	res, err = a.Apply(t.Context(), req, nil)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := res.Hosts[0]; got.Changes != nil || !slices.Equal(got.ChangedTasks, []string{"Save the previous app.conf as app.conf.prev", "Write app.conf"}) {
		t.Errorf("apply after the check: %+v", got)
	}
	if c := readConf(t, filepath.Join(f.Hosts()[0].Dir, "app.conf")); c.Version != "v7" {
		t.Errorf("web-1 after the apply: %+v, want v7", c)
	}
}

func equalChange(a, b ports.TaskChange) bool {
	return a.Task == b.Task && slices.Equal(a.Files, b.Files)
}
