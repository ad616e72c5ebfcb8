package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
	"github.com/rollguard/rollguard/simfleet/sshfleet"
)

// sshBaseline is the SSH fleet's baseline window: 20 one-second samples,
// over detection's minimum of 10. These cases judge applies, not
// detection (TestLive does that over a 60 s baseline).
const sshBaseline = 20 * time.Second

// TestLiveSSH runs rollguard the way users run it against their fleet:
// hosts in network namespaces reached over SSH with a key, an INI
// inventory with a web group, targets {inventory, group: web}, a `hosts:
// web` playbook, ansible.cfg in the spec's directory naming the
// known_hosts to trust, and a real VictoriaMetrics scraping each host's
// exporter on the host's own address. The cases run in order on one
// fleet, each from the configs the previous one left.
func TestLiveSSH(t *testing.T) {
	requireLive(t)
	f := sshfleet.ForTest(t, sshfleet.Config{Hosts: 3, Seed: 5})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	env, err := demo.StartEnv(ctx, demo.EnvOptions{Dir: dir, Fleet: f.Fleet, Playbooks: os.DirFS("testdata/playbooks")})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := os.CopyFS(filepath.Join(dir, "ssh"), os.DirFS("testdata/ssh")); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteInventory(filepath.Join(dir, "inventory.ini"), "web"); err != nil {
		t.Fatal(err)
	}
	cfg := "[defaults]\nhost_key_checking = True\n\n[ssh_connection]\nssh_args = -o UserKnownHostsFile=" + f.KnownHosts() +
		" -o ControlMaster=auto -o ControlPersist=60s\n"
	if err := os.WriteFile(filepath.Join(dir, "ansible.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// A vault-encrypted group_vars file beside the inventory, as users
	// keep their secrets: discovery (ansible-inventory) and every
	// playbook fail to load the inventory without apply.vault_password_file.
	const secret = "s3cr3t-from-the-vault"
	vaultVars := filepath.Join(dir, "group_vars", "web", "vault.yml")
	if err := os.MkdirAll(filepath.Dir(vaultVars), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.WriteFile(vaultVars, []byte("app_secret: "+secret+"\n"), 0o600),
		os.WriteFile(filepath.Join(dir, "vault.pw"), []byte("correct horse\n"), 0o600)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ansible-vault", "encrypt", "--vault-password-file", filepath.Join(dir, "vault.pw"), vaultVars).CombinedOutput(); err != nil {
		t.Fatalf("ansible-vault: %v\n%s", err, out)
	}
	// ssh-db: the same playbooks, site.yml's play for a group the
	// inventory does not have: it matches no host.
	site, err := os.ReadFile(filepath.Join(dir, "ssh", "site.yml"))
	if err == nil {
		err = os.CopyFS(filepath.Join(dir, "ssh-db"), os.DirFS(filepath.Join(dir, "ssh")))
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "ssh-db", "site.yml"), []byte(strings.Replace(string(site), "hosts: web", "hosts: db", 1)), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WaitForData(ctx, sshBaseline+5*time.Second, func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	l := &live{t: t, ctx: ctx, env: env}
	for _, h := range f.Hosts() {
		l.hosts = append(l.hosts, h.Name)
	}
	canary := l.hosts[0]
	spec := func(name, version string, extra map[string]string, o demo.SpecOptions) string {
		t.Helper()
		o.Name, o.Version, o.ExtraVars = name, version, extra
		o.Inventory, o.Group, o.VaultPasswordFile = "inventory.ini", "web", "vault.pw"
		if o.PlaybookDir == "" {
			o.PlaybookDir = "ssh"
		}
		o.Interval, o.Baseline, o.Monitor, o.WaveMonitor, o.Waves = time.Second, sshBaseline, 4*time.Second, 3*time.Second, []string{"100%"}
		o.Policies = "policies:\n  - name: extreme\n    rollback_when: 'top_mean(hosts, 0.30) > 50'\n"
		path, err := env.WriteSpec(o)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	hostReport := func(r report.Report, name string) report.HostReport {
		for _, h := range r.Hosts {
			if h.Name == name {
				return h
			}
		}
		t.Fatalf("no host %s in the report", name)
		return report.HostReport{}
	}
	untouched := func(t *testing.T, before map[string]int, hosts ...string) {
		t.Helper()
		after := l.writes()
		if hosts == nil {
			hosts = l.hosts[1:]
		}
		for _, h := range hosts {
			if after[h] != before[h] {
				t.Errorf("%s's app.conf was written although the canary stopped the rollout", h)
			}
		}
	}

	t.Run("a hosts: web playbook over an inventory group applies to every host", func(t *testing.T) {
		l.t = t
		code, r, out := l.run(spec("ssh-good", "v2", map[string]string{"latency_factor": "1.0"}, demo.SpecOptions{}), nil)
		if code != 0 || r.Outcome != report.OutcomePromoted {
			t.Fatalf("exit %d, outcome %q (%s)\n%s", code, r.Outcome, r.Reason, out)
		}
		for _, h := range l.hosts {
			if v := l.version(h); v != "v2" {
				t.Errorf("%s runs %s after a promoted rollout, want v2", h, v)
			}
			if hr := hostReport(r, h); hr.Status != ports.HostChanged || !hr.Applied || hr.Reverted {
				t.Errorf("%s in the report: status %q, applied %v, reverted %v: want changed, applied", h, hr.Status, hr.Applied, hr.Reverted)
			}
		}
		// The vaulted variable reached Ansible, and went no further.
		rep, _ := json.Marshal(r)
		texts := map[string]string{"the output": out, "the report": string(rep)}
		err := filepath.WalkDir(filepath.Join(dir, "state"), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				var data []byte
				data, err = os.ReadFile(path)
				texts[path] = string(data)
			}
			return err
		})
		if err != nil || len(texts) < 4 {
			t.Fatalf("the state directory (journal, history): %v, %d files", err, len(texts)-2)
		}
		for what, text := range texts {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the vaulted secret", what)
			}
		}
	})

	t.Run("a play matching no host halts at the canary, naming the pattern and the limit; nothing is touched", func(t *testing.T) {
		l.t = t
		before := l.writes()
		code, r, out := l.run(spec("ssh-nomatch", "v3", map[string]string{"latency_factor": "1.0"}, demo.SpecOptions{PlaybookDir: "ssh-db"}), nil)
		if code != 4 || r.Outcome != report.OutcomeHalted {
			t.Fatalf("exit %d, outcome %q (%s): want 4, halted\n%s", code, r.Outcome, r.Reason, out)
		}
		if want := canary + " unmatched: the play matched no host: `hosts: db`, but the limit was " + canary; !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q\nlacks %q", r.Reason, want)
		}
		untouched(t, before, l.hosts...)
		if hr := hostReport(r, canary); hr.Status != ports.HostUnmatched || hr.Applied || hr.Reverted {
			t.Errorf("canary in the report: status %q, applied %v, reverted %v: want unmatched, neither", hr.Status, hr.Applied, hr.Reverted)
		}
		if r.Rollback != nil {
			t.Errorf("a revert ran: %+v", r.Rollback)
		}
	})

	t.Run("a play failing on the canary stops the rollout; the canary is back on its config", func(t *testing.T) {
		l.t = t
		before, confs := l.writes(), l.confs()
		code, r, out := l.run(spec("ssh-fail", "v3", map[string]string{"latency_factor": "1.0", "fail_after_write_on": canary}, demo.SpecOptions{}), nil)
		if code != 3 || r.Outcome != report.OutcomeRolledBack {
			t.Fatalf("exit %d, outcome %q (%s): want 3, rolled back\n%s", code, r.Outcome, r.Reason, out)
		}
		if !strings.Contains(r.Reason, canary+" failed: ") || !strings.Contains(r.Reason, "service check failed") {
			t.Errorf("reason %q does not name %s and why", r.Reason, canary)
		}
		untouched(t, before)
		if got := l.conf(canary); got != confs[canary] {
			t.Errorf("canary's app.conf after the rollback:\n%s\nwant the previous one byte for byte:\n%s", got, confs[canary])
		}
		if hr := hostReport(r, canary); hr.Status != ports.HostFailed || !hr.Reverted {
			t.Errorf("canary in the report: status %q, reverted %v: want failed, reverted", hr.Status, hr.Reverted)
		}
	})

	t.Run("an unreachable canary is reported unreachable, never reverted; nothing else is touched", func(t *testing.T) {
		l.t = t
		f.StopSSH(ctx, canary)
		defer func() {
			if err := f.StartSSH(ctx, canary); err != nil {
				t.Fatal(err)
			}
		}()
		before := l.writes()
		code, r, out := l.run(spec("ssh-unreachable", "v4", map[string]string{"latency_factor": "1.0"}, demo.SpecOptions{}), nil, "-o", "json")
		if code != 4 || r.Outcome != report.OutcomeHalted {
			t.Fatalf("exit %d, outcome %q (%s): want 4, halted\n%s", code, r.Outcome, r.Reason, out)
		}
		if !strings.Contains(r.Reason, canary+" unreachable: ") {
			t.Errorf("reason %q does not say %s was unreachable", r.Reason, canary)
		}
		if hr := hostReport(r, canary); hr.Status != ports.HostUnreachable || hr.Reverted || hr.Applied {
			t.Errorf("canary in the report: status %q, applied %v, reverted %v: want unreachable, neither", hr.Status, hr.Applied, hr.Reverted)
		}
		if r.Rollback != nil {
			t.Errorf("a revert ran: %+v", r.Rollback)
		}
		// The pages name it unreachable and left alone, never reverted.
		md := report.Markdown(&r)
		for _, want := range []string{"**Did not apply:** " + canary + " unreachable.", "| " + canary + " | canary | **unreachable** | "} {
			if !strings.Contains(md, want) {
				t.Errorf("report.md lacks %q:\n%s", want, md)
			}
		}
		if strings.Contains(md, canary+" reverted") || strings.Contains(report.HTML(&r), canary+" (reverted)") {
			t.Errorf("the pages call the unreachable canary reverted")
		}
		untouched(t, before)
		doc := l.journal("ssh-unreachable")
		if !slices.ContainsFunc(doc.Entries, func(e runner.JournalEntry) bool {
			return e.Step == runner.JournalApplyEnd && e.Detail == "unreachable unchanged: "+canary
		}) {
			t.Errorf("the journal does not record the canary unreachable: %+v", doc.Entries)
		}
	})

	t.Run("a host-key problem fails at once, naming the host and the fix", func(t *testing.T) {
		l.t = t
		// A known_hosts without the canary's key: ssh would ask whether to
		// trust it. A prompt would hang the apply until apply.timeout
		// stopped it, and the reason would say it timed out.
		var known strings.Builder
		for _, h := range f.Hosts()[1:] {
			known.WriteString(h.Address + " " + h.HostKey + "\n")
		}
		bad := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(bad, []byte(known.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		l.extraEnv = []string{"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile=" + bad + " -o ControlMaster=auto -o ControlPersist=60s"}
		defer func() { l.extraEnv = nil }()
		before := l.writes()
		code, r, out := l.run(spec("ssh-hostkey", "v5", map[string]string{"latency_factor": "1.0"}, demo.SpecOptions{ApplyTimeout: time.Minute}), nil)
		if code != 4 || r.Outcome != report.OutcomeHalted {
			t.Fatalf("exit %d, outcome %q (%s): want 4, halted\n%s", code, r.Outcome, r.Reason, out)
		}
		addr := f.Hosts()[0].Address
		for _, want := range []string{canary + " unreachable: host key of " + canary + " (" + addr + ") not accepted", "ssh-keyscan -H " + addr} {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("reason %q\nlacks %q", r.Reason, want)
			}
		}
		if strings.Contains(r.Reason, "timed out") {
			t.Errorf("the apply waited for apply.timeout: %s", r.Reason)
		}
		untouched(t, before)
		w := r.Waves[0]
		t.Logf("host-key failure reported after %s (apply started to apply ended)", w.ApplyEndedAt.Sub(*w.ApplyStartedAt).Round(time.Millisecond))
	})
}
