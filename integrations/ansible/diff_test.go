package ansible_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

	// With the user's own inventory (Config.Inventory), as a run over
	// targets.inventory checks, the limit (a file) holds as in an apply.
	var ini strings.Builder
	ini.WriteString("[web]\n")
	for _, h := range f.Hosts() {
		fmt.Fprintf(&ini, "%s host_dir=%s ansible_connection=local ansible_python_interpreter=auto_silent\n", h.Name, h.Dir)
	}
	inv := filepath.Join(t.TempDir(), "hosts.ini")
	if err := os.WriteFile(inv, []byte(ini.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	userReq := req
	userReq.Limit = []string{"web-3"}
	res, err = ansible.New(ansible.Config{Inventory: inv}).Apply(t.Context(), userReq, nil)
	if err != nil {
		t.Fatalf("check over the user's inventory: %v", err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Host != "web-3" || len(res.Hosts[0].Changes) != 2 ||
		res.Hosts[0].Changes[1].Files[0].Path != filepath.Join(f.Hosts()[2].Dir, "app.conf") {
		t.Errorf("check over the user's inventory, limit web-3: %+v", res.Hosts)
	}
	if after := sums(); !maps.Equal(before, after) {
		t.Errorf("a check run over the user's inventory changed app.conf")
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
