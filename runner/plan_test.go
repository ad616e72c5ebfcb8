package runner

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

func hostsN(n int) []ports.Host {
	var hs []ports.Host
	for i := 1; i <= n; i++ {
		name := "web-" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		hs = append(hs, ports.Host{Name: name, Tags: []string{map[bool]string{true: "canary", false: "web"}[i == 3]}, Meta: map[string]string{"rack": map[bool]string{true: "r1", false: "r2"}[i%4 == 0]}})
	}
	return hs
}

func TestMakePlan(t *testing.T) {
	f := func(name string, canary HostSelector, waves []Wave, n int, want string) {
		t.Helper()
		spec := &Spec{Name: "t", Canary: Canary{Hosts: canary, Monitor: Duration(5 * time.Minute)}, Waves: waves}
		p, err := MakePlan(spec, hostsN(n))
		if err != nil {
			if !strings.HasPrefix(want, "error: ") || !strings.Contains(err.Error(), strings.TrimPrefix(want, "error: ")) {
				t.Errorf("%s: error %v, want %s", name, err, want)
			}
			return
		}
		var parts []string
		for _, w := range p.Waves {
			parts = append(parts, w.Name+"="+strings.Join(hostNames(w.Hosts), ","))
		}
		if got := strings.Join(parts, " "); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	all := []Wave{{Size: Size{Percent: 100}}}
	f("default canary of one, then the rest", HostSelector{}, all, 4, "canary=web-01 wave-1=web-02,web-03,web-04")
	f("count", HostSelector{Size: &Size{Count: 2}}, all, 4, "canary=web-01,web-02 wave-1=web-03,web-04")
	f("share rounds up", HostSelector{Size: &Size{Percent: 10}}, all, 11, "canary=web-01,web-02 wave-1=web-03,web-04,web-05,web-06,web-07,web-08,web-09,web-10,web-11")
	f("names keep the given order", HostSelector{Names: []string{"web-04", "web-02"}}, all, 4, "canary=web-04,web-02 wave-1=web-01,web-03")
	f("tag", HostSelector{Tag: "canary"}, all, 4, "canary=web-03 wave-1=web-01,web-02,web-04")
	f("meta", HostSelector{Meta: map[string]string{"rack": "r1"}}, all, 8, "canary=web-04,web-08 wave-1=web-01,web-02,web-03,web-05,web-06,web-07")
	f("shares of the remaining hosts", HostSelector{}, []Wave{{Size: Size{Percent: 50}}, {Size: Size{Percent: 100}, Name: "rest"}}, 5,
		"canary=web-01 wave-1=web-02,web-03 rest=web-04,web-05")
	f("a wave never takes more than is left; empty waves are dropped", HostSelector{}, []Wave{{Size: Size{Count: 10}}, {Size: Size{Percent: 100}}}, 3,
		"canary=web-01 wave-1=web-02,web-03")
	f("hosts left out", HostSelector{}, []Wave{{Size: Size{Percent: 50}}}, 5, "error: 2 would never receive the change")
	f("unknown canary name", HostSelector{Names: []string{"db-1"}}, all, 3, `error: host "db-1" is not among the targets`)
	f("no host with the tag", HostSelector{Tag: "blue"}, all, 3, `error: no target host has the tag "blue"`)
}

func TestPlanJSONContract(t *testing.T) {
	spec := &Spec{Name: "t", Canary: Canary{Monitor: Duration(5 * time.Minute)}, Waves: []Wave{{Size: Size{Percent: 100}, Monitor: Duration(90 * time.Second)}}}
	p, err := MakePlan(spec, hostsN(3))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got PlanJSON
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := PlanJSON{Waves: []PlanJSONWave{{Name: "canary", Hosts: []string{"web-01"}, Monitor: "5m"}, {Name: "wave-1", Hosts: []string{"web-02", "web-03"}, Monitor: "1m30s"}}}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("plan --json\n got %s\nwant %s", gj, wj)
	}
}
