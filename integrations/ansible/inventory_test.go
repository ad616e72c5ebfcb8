package ansible

import (
	"context"
	"os"
	"os/exec"
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
		hosts, err := Inventory(context.Background(), "", "testdata/inventory.ini", group)
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

	hosts, _ := Inventory(context.Background(), "", "testdata/inventory.ini", "web")
	if hosts[1].Vars["rack"] != "r2" {
		t.Errorf("web-2 vars %v, want rack=r2", hosts[1].Vars)
	}
	if _, err := Inventory(context.Background(), "", "testdata/inventory.ini", "nosuch"); err == nil || !strings.Contains(err.Error(), `no group "nosuch"`) {
		t.Errorf("unknown group: %v", err)
	}
}
