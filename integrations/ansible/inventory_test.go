package ansible

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInventory(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatal("ROLLGUARD_E2E=1 but ansible-inventory is not installed")
		}
		t.Skip("ansible-inventory not installed")
	}
	f := func(group string, want []string, wantAddr map[string]string) {
		t.Helper()
		hosts, err := Inventory(context.Background(), InventoryQuery{Path: "testdata/inventory.ini", Group: group})
		if err != nil {
			t.Fatalf("group %s: %v", group, err)
		}
		var names []string
		for _, h := range hosts {
			names = append(names, h.Name)
			if a, ok := wantAddr[h.Name]; ok && h.Address != a {
				t.Errorf("group %s: %s address %q, want %q", group, h.Name, h.Address, a)
			}
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("group %s: hosts %v, want %v", group, names, want)
		}
	}
	f("web", []string{"web-1", "web-2", "web-3"}, map[string]string{"web-1": "10.0.0.1", "web-3": "web-3"})
	f("prod", []string{"web-1", "web-2", "web-3", "db-1"}, map[string]string{"db-1": "10.0.1.1"})
	f("canary", []string{"web-1"}, nil)

	hosts, _ := Inventory(context.Background(), InventoryQuery{Path: "testdata/inventory.ini", Group: "web"})
	// An inventory host's tags are its groups, as group_names has them
	// (through child groups too), so canary.hosts {tag: canary} selects
	// the [canary] group.
	if got := strings.Join(hosts[0].Tags, ","); got != "canary,prod,web" {
		t.Errorf("web-1 tags %q, want canary,prod,web", got)
	}
	if hosts[1].Vars["rack"] != "r2" {
		t.Errorf("web-2 vars %v, want rack=r2", hosts[1].Vars)
	}
	if _, err := Inventory(context.Background(), InventoryQuery{Path: "testdata/inventory.ini", Group: "nosuch"}); err == nil || !strings.Contains(err.Error(), `no group "nosuch"`) {
		t.Errorf("unknown group: %v", err)
	}
}

// Discovery reads the inventory as ansible-playbook will: ansible.cfg from
// the spec's directory (here it names the vault password file), or the
// vault password file rollguard is given; without either, vault-encrypted
// group_vars cannot be read, and the error says so.
func TestInventoryVaultAndConfig(t *testing.T) {
	if _, err := exec.LookPath("ansible-vault"); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatal("ROLLGUARD_E2E=1 but ansible-vault is not installed")
		}
		t.Skip("ansible-vault not installed")
	}
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("inventory.ini", "[web]\nweb-1\nweb-2\n")
	write("vault.pw", "correct horse\n")
	write("group_vars/web/vault.yml", "app_token: s3cr3t-token\n")
	if out, err := exec.Command("ansible-vault", "encrypt", "--vault-password-file", filepath.Join(dir, "vault.pw"),
		filepath.Join(dir, "group_vars/web/vault.yml")).CombinedOutput(); err != nil {
		t.Fatalf("ansible-vault: %v\n%s", err, out)
	}
	cfgDir := filepath.Join(dir, "spec")
	write("spec/ansible.cfg", "[defaults]\nvault_password_file = ../vault.pw\n")
	inv := filepath.Join(dir, "inventory.ini")

	f := func(q InventoryQuery) {
		t.Helper()
		hosts, err := Inventory(t.Context(), q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if len(hosts) != 2 || hosts[0].Vars["app_token"] != "s3cr3t-token" {
			t.Errorf("%+v: hosts %+v, want web-1 and web-2 with the vaulted app_token", q, hosts)
		}
	}
	f(InventoryQuery{Path: inv, Group: "web", Dir: cfgDir})
	f(InventoryQuery{Path: inv, Group: "web", VaultPasswordFile: filepath.Join(dir, "vault.pw")})
	_, err := Inventory(t.Context(), InventoryQuery{Path: inv, Group: "web", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "vault") {
		t.Errorf("without a vault password: %v, want Ansible's vault error", err)
	}
}
