package ansible_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/ansible"
	"github.com/rollguard/rollguard/ports"
)

// webPlaybook is site.yml's play for the `web` group only.
const webPlaybook = `- name: Configure web
  hosts: web
  gather_facts: false
  tasks:
    - name: Write app.conf
      ansible.builtin.copy:
        content: "version={{ version }}\n"
        dest: "{{ host_dir }}/app.conf"
        mode: "0644"
`

// A play whose `hosts:` pattern matches none of the limited hosts changes
// nothing, and every such host says so with the pattern and the limit:
// over a generated inventory (static, Consul, Nomad targets), whose hosts
// are in no group, and over the user's inventory with a limit outside
// the group.
func TestApplyPlayMatchesNoHost(t *testing.T) {
	requireAnsible(t)
	f, hosts := fleet(t, 3)
	dir := t.TempDir()
	book := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(book, []byte(webPlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	var inv strings.Builder
	inv.WriteString("[web]\n")
	for _, h := range hosts[:2] {
		fmt.Fprintf(&inv, "%s host_dir=%s\n", h.Name, h.Vars["host_dir"])
	}
	fmt.Fprintf(&inv, "[db]\n%s host_dir=%s\n[all:vars]\nansible_connection=local\nansible_python_interpreter=auto_silent\n", hosts[2].Name, hosts[2].Vars["host_dir"])
	invPath := filepath.Join(dir, "inventory.ini")
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	apply := func(cfg ansible.Config, limit []string) map[string]ports.HostResult {
		t.Helper()
		res, err := ansible.New(cfg).Apply(t.Context(), ports.ApplyRequest{
			Playbook: book, Inventory: hosts, Limit: limit, ExtraVars: map[string]any{"version": "v2"},
		}, nil)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		out := map[string]ports.HostResult{}
		for _, hr := range res.Hosts {
			out[hr.Host] = hr
		}
		return out
	}
	check := func(got ports.HostResult, status, msg string) {
		t.Helper()
		if got.Status != status || got.Message != msg || got.Applied() != (status == ports.HostChanged) {
			t.Errorf("%s: %+v\nwant %s: %q", got.Host, got, status, msg)
		}
	}

	all := []string{"web-1", "web-2", "web-3"}
	res := apply(ansible.Config{WorkDir: dir}, all)
	for _, name := range all {
		check(res[name], ports.HostUnmatched, "the play matched no host: `hosts: web`, but the limit was web-1,web-2,web-3")
	}
	for _, name := range all {
		if n := f.Writes(name); n != 0 {
			t.Errorf("%s was written %d times by a play that matched no host", name, n)
		}
	}

	res = apply(ansible.Config{WorkDir: dir, Inventory: invPath}, []string{"web-3"})
	check(res["web-3"], ports.HostUnmatched, "the play matched no host: `hosts: web`, but the limit was web-3")
	res = apply(ansible.Config{WorkDir: dir, Inventory: invPath}, []string{"web-1", "web-3"})
	check(res["web-1"], ports.HostChanged, "")
	check(res["web-3"], ports.HostUnmatched, "no play matched the host: `hosts: web` matched web-1; the limit was web-1,web-3")
	if n := f.Writes("web-3"); n != 0 {
		t.Errorf("web-3 (group db) was written")
	}
}

// A run that outlasts Config.Timeout (apply.timeout) is stopped, with its
// whole process group, and says so.
func TestApplyTimeout(t *testing.T) {
	requireAnsible(t)
	_, hosts := fleet(t, 2)
	marker := fmt.Sprintf("rollguard-timeout-%d-%d", os.Getpid(), time.Now().UnixNano())
	a := ansible.New(ansible.Config{
		Timeout: 4 * time.Second, KillGrace: time.Second,
		Env: map[string]string{"ROLLGUARD_TEST_MARKER": marker},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := a.Apply(ctx, ports.ApplyRequest{Playbook: filepath.Join(playbooks, "slow.yml"), Inventory: hosts}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stopped after 4s (apply.timeout)") {
		t.Fatalf("Apply: %v, want a timeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the test's own deadline passed: the timeout did not stop the run")
	}
	if len(res.Hosts) != 2 {
		t.Errorf("results %+v: want both hosts", res.Hosts)
	}
	var left []proc
	if err := pollUntil(ctx, func() bool { left = marked(marker); return len(left) == 0 }); err != nil {
		t.Errorf("processes left after the timeout: %+v", left)
	}
}

// A run's temporary directory that its (killed) run left is removed by
// the next run; one whose run is alive, and one of an older rollguard
// (no owner file), are left alone.
func TestApplySweepsDeadRunsDirectories(t *testing.T) {
	requireAnsible(t)
	tmp := privateTemp(t)
	_, hosts := fleet(t, 1)
	mk := func(name string, owner bool) string {
		t.Helper()
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(dir, "cp"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "extra-vars.json"), []byte(`{"db_password":"x"}`), 0o600)
		if owner {
			os.WriteFile(filepath.Join(dir, "owner"), []byte("pid 1\n"), 0o600)
		}
		return dir
	}
	dead, alive, old := mk("rollguard-ansible-dead", true), mk("rollguard-ansible-alive", true), mk("rollguard-ansible-old", false)
	lock, err := os.Open(alive)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = ansible.New(ansible.Config{}).Apply(t.Context(), ports.ApplyRequest{
		Playbook: filepath.Join(playbooks, "site.yml"), Inventory: hosts, ExtraVars: map[string]any{"version": "v2"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead run's directory is still there (%v)", err)
	}
	for _, dir := range []string{alive, old} {
		if _, err := os.Stat(filepath.Join(dir, "extra-vars.json")); err != nil {
			t.Errorf("%s was touched: %v", dir, err)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, "rollguard-ansible-*"))
	if len(dirs) != 2 {
		t.Errorf("directories after the run: %v, want only the live and the old one", dirs)
	}
}
