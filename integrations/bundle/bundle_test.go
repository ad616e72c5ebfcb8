package bundle

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/integrations/bundle/bundletest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// listing prints a bundle the way the goldens hold it.
func listing(b *Bundle) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "spec: %s\nrequirements: %s\nfiles (%d, %s):\n", b.Spec, b.Requirements, len(b.Files), Size(b.Total()))
	for _, f := range b.Files {
		fmt.Fprintf(&sb, "  %-45s %s\n", f.Path, f.Why)
	}
	sb.WriteString("secrets:\n")
	for _, s := range b.Secrets {
		fmt.Fprintf(&sb, "  %-20s %-20s %s\n", s.Path, s.Item, s.Why)
	}
	sb.WriteString("skipped:\n")
	for _, s := range b.Skipped {
		fmt.Fprintf(&sb, "  %-45s %s\n", s.Path, s.Reason)
	}
	sb.WriteString("notes:\n")
	for _, n := range b.Notes {
		fmt.Fprintf(&sb, "  %s\n", n)
	}
	return sb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("bundle differs from %s (run with -update to accept):\n%s", p, got)
	}
}

func flatSources(t *testing.T) (Sources, string) {
	t.Helper()
	dir := t.TempDir()
	if err := bundletest.Flat(dir); err != nil {
		t.Fatal(err)
	}
	return Sources{
		Spec: filepath.Join(dir, "rollout.yaml"), Dir: dir,
		PolicyFiles:       []string{filepath.Join(dir, "latency.yaml")},
		ApplyPlaybook:     filepath.Join(dir, "site.yml"),
		Inventory:         filepath.Join(dir, "inventory.ini"),
		VaultPasswordFile: filepath.Join(dir, ".vault-pass"),
	}, dir
}

// The flat layout: rollout.yaml next to site.yml, with a vault password
// file, an SSH key, .git, .rollguard/ and an earlier job.json beside them.
func TestResolveFlat(t *testing.T) {
	src, _ := flatSources(t)
	b, err := Resolve(src)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "flat.golden", listing(b))
	for _, f := range b.Files {
		for _, secret := range []string{bundletest.VaultPassword, "OPENSSH PRIVATE KEY", "ghs_s3cr3tgittoken", "state-must-not-travel", "job-must-not-travel"} {
			if strings.Contains(string(f.Data), secret) {
				t.Errorf("%s carries %q", f.Path, secret)
			}
		}
	}
}

// The roles layout: playbooks/ with roles/, an inventory directory with
// group_vars, roles_path from ansible.cfg, a role dependency from it.
func TestResolveRoles(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("testdata", "roles"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(Sources{
		Spec: filepath.Join(dir, "rollout.yaml"), Dir: dir,
		PolicyFiles:    []string{filepath.Join(dir, "policies", "latency.yaml")},
		ApplyPlaybook:  filepath.Join(dir, "playbooks", "site.yml"),
		RevertPlaybook: filepath.Join(dir, "playbooks", "revert.yml"),
		Inventory:      filepath.Join(dir, "inventories", "prod.ini"),
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "roles.golden", listing(b))
}

// An inventory outside the spec's directory moves the root up, so that
// the spec's relative path to it still holds.
func TestResolveOutsideSpecDir(t *testing.T) {
	src, dir := flatSources(t)
	inv := filepath.Join(filepath.Dir(dir), "inventories", "prod.ini")
	os.MkdirAll(filepath.Dir(inv), 0o755)
	os.WriteFile(inv, []byte("[web]\nweb-1\n"), 0o644)
	src.Inventory = inv
	b, err := Resolve(src)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(dir)
	if b.Root != filepath.Dir(dir) || b.Spec != base+"/rollout.yaml" {
		t.Errorf("root %s, spec %s: want the parent, so ../inventories/prod.ini resolves", b.Root, b.Spec)
	}
	found := false
	for _, f := range b.Files {
		found = found || f.Path == "inventories/prod.ini"
	}
	if !found {
		t.Errorf("inventory outside the spec's directory not in the bundle:\n%s", listing(b))
	}
}

// What cannot travel is refused with the reason and the limit.
func TestResolveRefuses(t *testing.T) {
	f := func(name string, mod func(src *Sources, dir string), want ...string) {
		t.Helper()
		src, dir := flatSources(t)
		mod(&src, dir)
		_, err := Resolve(src)
		if err == nil {
			t.Errorf("%s: Resolve succeeded", name)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
	}
	f("large template", func(_ *Sources, dir string) {
		os.WriteFile(filepath.Join(dir, "templates", "big.j2"), []byte(strings.Repeat("x", MaxFileSize+1)), 0o644)
	}, "templates/big.j2", "256.0 KiB", "over the 256 KiB limit of one embedded file")
	f("binary file", func(_ *Sources, dir string) {
		os.WriteFile(filepath.Join(dir, "templates", "logo.png"), []byte{0x89, 'P', 'N', 'G', 0, 0xff}, 0o644)
	}, "templates/logo.png", "binary")
	f("total", func(_ *Sources, dir string) {
		for i := range 5 {
			os.WriteFile(filepath.Join(dir, "templates", fmt.Sprintf("t%d.j2", i)), []byte(strings.Repeat("y", MaxFileSize-1)), 0o644)
		}
	}, "over the 1 MiB limit of a bundle")
	f("hidden vars file", func(_ *Sources, dir string) {
		os.WriteFile(filepath.Join(dir, "site.yml"), []byte("- hosts: web\n  vars_files: [.env.yml]\n"), 0o644)
		os.WriteFile(filepath.Join(dir, ".env.yml"), []byte("a: 1\n"), 0o644)
	}, ".env.yml", "hidden files")
	f("the key as a vars file", func(_ *Sources, dir string) {
		os.WriteFile(filepath.Join(dir, "site.yml"), []byte("- hosts: web\n  vars_files: [id_ed25519]\n"), 0o644)
	}, "id_ed25519", "secret file")
	f("missing task file", func(_ *Sources, dir string) {
		os.WriteFile(filepath.Join(dir, "site.yml"), []byte("- hosts: web\n  tasks:\n    - include_tasks: nope.yml\n"), 0o644)
	}, "nope.yml", "does not exist")
}

// SSH keys named by the inventory or a host's vars are secrets too; what
// cannot be resolved before the run is said.
func TestResolveKeysAndNotes(t *testing.T) {
	src, dir := flatSources(t)
	os.WriteFile(filepath.Join(dir, "ansible.cfg"), []byte("[defaults]\nhost_key_checking = True\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "inventory.ini"), []byte("[web]\nweb-1 ansible_ssh_private_key_file=keys/web.key\nweb-2 ansible_become_password=hunter2\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	os.WriteFile(filepath.Join(dir, "keys", "web.key"), []byte(bundletest.SSHKey), 0o600)
	os.WriteFile(filepath.Join(dir, "site.yml"), []byte("- hosts: web\n  tasks:\n    - include_tasks: \"{{ tasks_file }}\"\n"), 0o644)
	src.HostVars = []map[string]any{{"ansible_ssh_private_key_file": "~/.ssh/id_rsa"}}
	b, err := Resolve(src)
	if err != nil {
		t.Fatal(err)
	}
	got := listing(b)
	for _, want := range []string{
		"keys/web.key         file_keys_web_key    inventory.ini",
		"targets.static[0].vars.ansible_ssh_private_key_file names the SSH key ~/.ssh/id_rsa in a home directory",
		"inventory.ini holds a password in clear text",
		`site.yml: include_tasks "{{ tasks_file }}" is templated and was not followed`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bundle lacks %q:\n%s", want, got)
		}
	}
	// No longer named by ansible.cfg, the key is a private key left behind.
	if !strings.Contains(got, "  id_ed25519                                    a private key\n") {
		t.Errorf("id_ed25519 not left out as a private key:\n%s", got)
	}
}
