package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// planWaves is what the topology tests read of `plan --json`.
type planWaves struct {
	Waves []struct {
		Name     string   `json:"name"`
		Hosts    []string `json:"hosts"`
		Monitor  string   `json:"monitor"`
		Topology *struct {
			Key    string `json:"key"`
			Mode   string `json:"mode"`
			Values []struct {
				Value string   `json:"value"`
				Hosts []string `json:"hosts"`
				Total int      `json:"total"`
			} `json:"values"`
		} `json:"topology"`
	} `json:"waves"`
}

// zonesOf maps each wave to the zones of its hosts, from the fleet's
// zone of each host (not from the plan's own topology field).
func zonesOf(p planWaves, zone map[string]string) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, w := range p.Waves {
		out[w.Name] = map[string]int{}
		for _, h := range w.Hosts {
			out[w.Name][zone[h]]++
		}
	}
	return out
}

// TestPlanTopology plans a 12-host fleet in 3 zones (web-01..04 in eu-1a,
// 05..08 in eu-1b, 09..12 in eu-1c), discovered from Consul (a recorded
// health response, extended with zone node meta), listed statically with
// meta, and in an Ansible inventory with a zone host variable: spread_by: zone gives waves that each mix the zones, by: zone
// one wave per zone after the canary.
func TestPlanTopology(t *testing.T) {
	srv := &fixtureServer{routes: map[string]string{
		"/v1/health/service/web": "integrations/consul/testdata/health_service_web_zones.json",
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	env := []string{"CONSUL_HTTP_ADDR=" + ts.URL}
	zone := map[string]string{}
	static := "targets:\n  static:\n"
	inventory := "[web]\n"
	for i := 1; i <= 12; i++ {
		name := fmt.Sprintf("web-%02d", i)
		zone[name] = []string{"eu-1a", "eu-1b", "eu-1c"}[(i-1)/4]
		static += "    - {name: " + name + ", meta: {zone: " + zone[name] + "}}\n"
		inventory += name + " ansible_host=10.0.1." + strconv.Itoa(i) + " zone=" + zone[name] + "\n"
	}
	sources := map[string]string{
		"consul": "targets:\n  consul: {service: web}\n",
		"static": static,
	}
	// An inventory's host variables, read by the real ansible-inventory.
	if _, err := exec.LookPath("ansible-inventory"); err == nil {
		sources["inventory"] = "targets:\n  inventory: hosts.ini\n  group: web\n"
	} else if os.Getenv("ROLLGUARD_E2E") == "1" {
		t.Fatalf("ROLLGUARD_E2E=1 but %v", err)
	}
	plan := func(t *testing.T, targets, waves string) (int, planWaves, string) {
		t.Helper()
		spec := writeSpec(t, "name: web-zones\n"+targets+"canary: {hosts: 1, monitor: 3m}\n"+waves+clusterSpecTail)
		if err := os.WriteFile(filepath.Join(filepath.Dir(spec), "hosts.ini"), []byte(inventory), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := rollguardEnv(t, env, "plan", "--json", "-f", spec)
		var p planWaves
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				t.Fatalf("plan --json: %v\n%s", err, out)
			}
		}
		return code, p, errOut
	}
	for source, targets := range sources {
		t.Run(source, func(t *testing.T) {
			// Without topology the waves take hosts in name order: the
			// first wave holds all of eu-1a but the canary, and eu-1b whole.
			code, p, errOut := plan(t, targets, "waves: [{size: 50%}, {size: 100%}]\n")
			if code != 0 {
				t.Fatalf("plan: exit %d: %s", code, errOut)
			}
			if z := zonesOf(p, zone)["wave-1"]; z["eu-1b"] != 3 || z["eu-1c"] != 0 {
				t.Fatalf("plain waves: wave-1 zones %v; the fixture no longer shows the problem", z)
			}

			code, p, errOut = plan(t, targets, "waves: [{size: 3, spread_by: zone}, {size: 25%, spread_by: zone}, {size: 100%, spread_by: zone}]\n")
			if code != 0 {
				t.Fatalf("spread_by: exit %d: %s", code, errOut)
			}
			if len(p.Waves) != 4 {
				t.Fatalf("spread_by: %d waves, want canary + 3", len(p.Waves))
			}
			for _, w := range p.Waves[1:] {
				z := zonesOf(p, zone)[w.Name]
				if len(z) != 3 {
					t.Errorf("spread_by: wave %s %v holds zones %v, want all three", w.Name, w.Hosts, z)
				}
				for v, n := range z {
					if n == 4 {
						t.Errorf("spread_by: wave %s holds the whole zone %s", w.Name, v)
					}
				}
				if w.Topology == nil || w.Topology.Key != "zone" || w.Topology.Mode != "spread_by" || len(w.Topology.Values) != 3 || w.Topology.Values[0].Total != 4 {
					t.Errorf("spread_by: wave %s topology %+v, want key zone, mode spread_by, 3 values of 4 hosts", w.Name, w.Topology)
				}
			}

			code, p, errOut = plan(t, targets, "waves: [{by: zone, monitor: 3m}]\n")
			if code != 0 {
				t.Fatalf("by: exit %d: %s", code, errOut)
			}
			var names []string
			for _, w := range p.Waves {
				names = append(names, w.Name)
			}
			if got := strings.Join(names, " "); got != "canary zone-eu-1a zone-eu-1b zone-eu-1c" {
				t.Fatalf("by: waves %s, want canary then one per zone", got)
			}
			for _, w := range p.Waves[1:] {
				z := zonesOf(p, zone)[w.Name]
				if len(z) != 1 || z[strings.TrimPrefix(w.Name, "zone-")] == 0 || w.Monitor != "3m" {
					t.Errorf("by: wave %s (monitor %s) holds zones %v", w.Name, w.Monitor, z)
				}
			}

			// A limit the fleet cannot meet names the wave, the zone and
			// the numbers: exit 2 for a static list (validate says so too),
			// 1 for discovered hosts.
			waves := "waves: [{size: 100%, spread_by: zone, max_per_value: 3}]\n"
			code, _, errOut = plan(t, targets, waves)
			want := map[string]int{"static": 2, "consul": 1, "inventory": 1}[source]
			if code != want || !strings.Contains(errOut, `waves[0] ("wave-1", spread_by: zone, max_per_value: 3)`) ||
				!strings.Contains(errOut, "zone eu-1b keeps 1 of its 4 hosts (web-08), of which a wave may take 3") {
				t.Errorf("max_per_value 3: exit %d, want %d; stderr:\n%s", code, want, errOut)
			}
			if source == "static" {
				spec := writeSpec(t, "name: web-zones\n"+targets+waves+clusterSpecTail)
				code, _, errOut := rollguard(t, "validate", "-f", spec)
				if code != 2 || !strings.Contains(errOut, "rollout.yaml:16:9: waves[0]") {
					t.Errorf("validate: exit %d, want 2 at the wave's line:col; stderr:\n%s", code, errOut)
				}
			}
		})
	}
}

// TestDryRunZones replays the good recording through waves that follow
// the hosts' zones: the report's waves are the plan's.
func TestDryRunZones(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/zones.yaml", "--metrics", "testdata/recordings/good.jsonl",
		"--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	r := readReport(t, dir)
	var got []string
	for _, w := range r.Waves {
		got = append(got, w.Name+"="+strings.Join(w.Hosts, ",")+":"+string(w.Outcome))
	}
	const want = "canary=web-1:passed wave-1=web-2,web-3,web-4:passed zone-a=web-7,web-10:passed zone-b=web-5,web-8:passed zone-c=web-6,web-9:passed"
	if strings.Join(got, " ") != want {
		t.Errorf("report waves\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}
