package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
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
	var b, got bytes.Buffer
	if err := p.WriteJSON(&b, "t"); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&got, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The contract's {"waves":[{"name","hosts","monitor"}]}, extended by
	// the rollout's name (and bake, when the spec has one).
	want := `{"rollout":"t","waves":[{"name":"canary","hosts":["web-01"],"monitor":"5m"},{"name":"wave-1","hosts":["web-02","web-03"],"monitor":"1m30s"}]}`
	if got.String() != want {
		t.Errorf("plan --json\n got %s\nwant %s", got.String(), want)
	}
}

// zoned makes hosts web-01, web-02, ... whose meta zone is the i-th value
// of zones: "-" leaves a host without one, "var:x" sets it as an Ansible
// host variable instead (an inventory host).
func zoned(zones ...string) []ports.Host {
	var hs []ports.Host
	for i, z := range zones {
		h := ports.Host{Name: fmt.Sprintf("web-%02d", i+1)}
		switch v, isVar := strings.CutPrefix(z, "var:"); {
		case z == "-":
		case isVar:
			h.Vars = map[string]any{"zone": v}
		default:
			h.Meta = map[string]string{"zone": z, "rack": "r" + strconv.Itoa(i%2)}
		}
		hs = append(hs, h)
	}
	return hs
}

// planText writes a plan as "canary=web-01 wave-1=web-02,web-03 ...".
func planText(p *Plan) string {
	var parts []string
	for _, w := range p.Waves {
		parts = append(parts, w.Name+"="+strings.Join(hostNames(w.Hosts), ","))
	}
	return strings.Join(parts, " ")
}

func TestMakePlanTopology(t *testing.T) {
	f := func(name string, canary Canary, waves []Wave, hosts []ports.Host, want string) {
		t.Helper()
		canary.Monitor = Duration(5 * time.Minute)
		p, err := MakePlan(&Spec{Name: "t", Canary: canary, Waves: waves}, hosts)
		got := ""
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = planText(p)
		}
		if !strings.HasPrefix(want, "error: ") && got != want || strings.HasPrefix(want, "error: ") && !strings.Contains(got, strings.TrimPrefix(want, "error: ")) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	one := Canary{}
	abc12 := zoned("a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b", "c")
	aaa12 := zoned("a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c")
	spread := func(size Size, maxPer int, whole bool) Wave {
		return Wave{Size: size, SpreadBy: "zone", MaxPerValue: maxPer, NeverWhole: whole}
	}
	all := Wave{Size: Size{Percent: 100}}

	f("without topology the waves take hosts in target order: a whole zone", one, []Wave{{Size: Size{Count: 4}}, all}, aaa12,
		"canary=web-01 wave-1=web-02,web-03,web-04,web-05 wave-2=web-06,web-07,web-08,web-09,web-10,web-11,web-12")
	f("spread_by: every wave mixes the zones", one, []Wave{spread(Size{Count: 3}, 0, false), spread(Size{Percent: 50}, 0, false), all}, aaa12,
		"canary=web-01 wave-1=web-02,web-05,web-09 wave-2=web-03,web-04,web-06,web-07,web-10,web-11 wave-3=web-08,web-12")
	f("spread_by keeps target order inside a zone and in the wave", one, []Wave{spread(Size{Count: 3}, 0, false), all}, abc12,
		"canary=web-01 wave-1=web-02,web-03,web-04 wave-2=web-05,web-06,web-07,web-08,web-09,web-10,web-11,web-12")
	f("uneven zones: one host of each before a second of any, then in proportion to what each has left",
		one, []Wave{spread(Size{Count: 5}, 0, false), all}, zoned("a", "a", "a", "a", "a", "a", "b", "b", "b", "c"),
		"canary=web-01 wave-1=web-02,web-03,web-07,web-08,web-10 wave-2=web-04,web-05,web-06,web-09")
	f("a wave smaller than the number of zones takes the zones with most hosts left", one, []Wave{spread(Size{Count: 2}, 0, false), all},
		zoned("a", "a", "b", "b", "b", "c"), "canary=web-01 wave-1=web-02,web-03 wave-2=web-04,web-05,web-06")
	f("max_per_value caps a zone; the next wave takes the rest", one, []Wave{spread(Size{Percent: 100}, 1, false), all}, aaa12,
		"canary=web-01 wave-1=web-02,web-05,web-09 wave-2=web-03,web-04,web-06,web-07,web-08,web-10,web-11,web-12")
	f("max_per_value too small to reach every host names the wave, the zones and the numbers", one, []Wave{spread(Size{Count: 3}, 1, false), spread(Size{Percent: 100}, 2, false)}, aaa12,
		`error: waves[1] ("wave-2", spread_by: zone, max_per_value: 2) is the last wave and leaves 2 hosts that no wave reaches: zone b keeps 1 of its 4 hosts (web-08), of which a wave may take 2; zone c keeps 1 of its 4 hosts (web-12), of which a wave may take 2`)
	f("never_whole: a wave never holds every host of a zone", one, []Wave{spread(Size{Percent: 100}, 0, true), all}, aaa12,
		"canary=web-01 wave-1=web-02,web-03,web-04,web-05,web-06,web-07,web-09,web-10,web-11 wave-2=web-08,web-12")
	f("never_whole and a zone of one host: no wave may take it", one, []Wave{spread(Size{Percent: 100}, 0, true)}, zoned("a", "a", "b", "b", "c"),
		`error: zone c keeps 1 of its 1 hosts (web-05), of which a wave may take 0`)
	f("a host without the key in a spread_by wave is an error that names it", one, []Wave{spread(Size{Percent: 50}, 0, false), all}, zoned("a", "b", "-", "a", "-"),
		`error: waves[0] (spread_by: zone): 2 of the 4 hosts it draws from have no meta or host variable "zone": web-03, web-05`)
	f("a host without the key is fine in the canary and in plain waves", one, []Wave{{Size: Size{Count: 1}}, spread(Size{Percent: 100}, 0, false)}, zoned("-", "-", "a", "b"),
		"canary=web-01 wave-1=web-02 wave-2=web-03,web-04")
	f("an inventory host variable is the value when meta has none", one, []Wave{spread(Size{Count: 2}, 0, false), all}, zoned("var:a", "var:a", "var:a", "var:b"),
		"canary=web-01 wave-1=web-02,web-04 wave-2=web-03")

	f("by: one wave per zone after the canary, in value order", one, []Wave{{By: "zone"}}, abc12,
		"canary=web-01 zone-a=web-04,web-07,web-10 zone-b=web-02,web-05,web-08,web-11 zone-c=web-03,web-06,web-09,web-12")
	f("by after a spread_by wave, named", one, []Wave{spread(Size{Count: 3}, 0, false), {By: "zone", Name: "dc"}}, aaa12,
		"canary=web-01 wave-1=web-02,web-05,web-09 dc-a=web-03,web-04 dc-b=web-06,web-07,web-08 dc-c=web-10,web-11,web-12")
	f("by with a host without the key", one, []Wave{{By: "zone"}}, zoned("a", "b", "-"),
		`error: waves[0] (by: zone): 1 of the 2 hosts it draws from have no meta or host variable "zone": web-03`)
	f("a by wave's name that another wave has", one, []Wave{{Size: Size{Count: 1}, Name: "zone-b"}, {By: "zone"}}, abc12,
		`error: waves[1].by: two waves would be named "zone-b"`)

	f("canary pinned to a zone", Canary{Hosts: HostSelector{Size: &Size{Count: 2}}, Pin: map[string]string{"zone": "b"}}, []Wave{{By: "zone"}}, abc12,
		"canary=web-02,web-05 zone-a=web-01,web-04,web-07,web-10 zone-b=web-08,web-11 zone-c=web-03,web-06,web-09,web-12")
	f("a pinned share is of the whole fleet", Canary{Hosts: HostSelector{Size: &Size{Percent: 20}}, Pin: map[string]string{"zone": "c"}}, []Wave{all}, aaa12,
		"canary=web-09,web-10,web-11 wave-1=web-01,web-02,web-03,web-04,web-05,web-06,web-07,web-08,web-12")
	f("a pin with too few hosts", Canary{Hosts: HostSelector{Size: &Size{Count: 5}}, Pin: map[string]string{"zone": "c"}}, []Wave{all}, aaa12,
		"error: canary: pinned to zone=c, which 4 of the 12 targets have; the canary takes 5")
}

// TestSpreadProperties checks, over many random fleets, what spread_by
// promises: every host once, no zone over max_per_value in a wave, never
// a whole zone with never_whole, as many zones as the wave can hold, and
// the same plan every time.
func TestSpreadProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		var zones []string
		for range 1 + rng.IntN(40) {
			zones = append(zones, string(rune('a'+rng.IntN(1+rng.IntN(6)))))
		}
		hosts := zoned(zones...)
		w := Wave{Size: Size{Count: 1 + rng.IntN(len(hosts))}, SpreadBy: "zone", MaxPerValue: rng.IntN(4), NeverWhole: rng.IntN(2) == 0}
		spec := &Spec{Name: "t", Waves: []Wave{w, w, w, {Size: Size{Percent: 100}}}}
		p, err := MakePlan(spec, hosts)
		if err != nil {
			t.Fatalf("trial %d, zones %v, wave %+v: %v", trial, zones, w, err)
		}
		again, _ := MakePlan(spec, hosts)
		if planText(p) != planText(again) {
			t.Fatalf("trial %d: two plans of the same hosts differ:\n%s\n%s", trial, planText(p), planText(again))
		}
		totals := valueTotals(hosts, "zone")
		seen := map[string]bool{}
		left := map[string]int{}
		for _, h := range hosts {
			left[h.Meta["zone"]]++
		}
		for _, pw := range p.Waves {
			per := map[string]int{}
			for _, h := range pw.Hosts {
				if seen[h.Name] {
					t.Fatalf("trial %d: %s in two waves", trial, h.Name)
				}
				seen[h.Name] = true
				per[h.Meta["zone"]]++
			}
			if pw.Topology != nil && pw.Topology.Mode == TopologySpread {
				available := 0 // zones that could give this wave a host
				for z, n := range left {
					if n > 0 && spreadLimit(w, totals[z]) != 0 {
						available++
					}
				}
				if len(per) != min(available, w.Size.Count) {
					t.Fatalf("trial %d: wave %s takes %d zones (%v), %d could give a host and it holds %d", trial, pw.Name, len(per), per, available, w.Size.Count)
				}
				for z, n := range per {
					if w.MaxPerValue > 0 && n > w.MaxPerValue {
						t.Fatalf("trial %d: wave %s takes %d hosts of zone %s, max_per_value %d", trial, pw.Name, n, z, w.MaxPerValue)
					}
					if w.NeverWhole && n == totals[z] {
						t.Fatalf("trial %d: wave %s holds all %d hosts of zone %s", trial, pw.Name, n, z)
					}
				}
			}
			for z, n := range per {
				left[z] -= n
			}
		}
		if len(seen) != len(hosts) {
			t.Fatalf("trial %d: %d of %d hosts planned", trial, len(seen), len(hosts))
		}
	}
}

// TestPlanFromJournalTopology checks that a resumed run follows the
// journaled plan of a by wave, which the spec's waves no longer give by
// index: the same waves, hosts and monitoring periods.
func TestPlanFromJournalTopology(t *testing.T) {
	spec := &Spec{Name: "t", Canary: Canary{Monitor: Duration(5 * time.Minute)},
		Waves: []Wave{{Size: Size{Count: 2}, SpreadBy: "zone", Monitor: Duration(7 * time.Minute)}, {By: "zone", Monitor: Duration(10 * time.Minute)}}}
	hosts := zoned("a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c", "c")
	p, err := MakePlan(spec, hosts)
	if err != nil {
		t.Fatal(err)
	}
	x := &execution{Rollout: &Rollout{Plan: p}}
	doc := &JournalDoc{Plan: x.journalPlan()}
	// Discovery now answers in another order and without web-12: the
	// journaled plan still decides.
	later := slices.Clone(hosts[:11])
	slices.Reverse(later)
	got, err := PlanFromJournal(spec, doc, later)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(p *Plan) string {
		var parts []string
		for _, w := range p.Waves {
			parts = append(parts, fmt.Sprintf("%s=%s/%s", w.Name, strings.Join(hostNames(w.Hosts), ","), fmtDuration(w.Monitor)))
		}
		return strings.Join(parts, " ")
	}
	const want = "canary=web-01/5m wave-1=web-05,web-09/7m zone-a=web-02,web-03,web-04/10m zone-b=web-06,web-07,web-08/10m zone-c=web-10,web-11,web-12/10m"
	if describe(p) != want || describe(got) != want {
		t.Errorf("plan\n got %s\nresumed %s\nwant %s", describe(p), describe(got), want)
	}
}

// TestPlanTopologyOutput pins what `plan` shows of testdata/topology-good.yaml,
// as text and as JSON (the contract's keys, plus topology).
func TestPlanTopologyOutput(t *testing.T) {
	spec, _, err := Load("testdata/topology-good.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(spec, StaticHosts(spec))
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	p.WriteText(&text)
	const want = `12 hosts in 5 waves
  canary       1 hosts, monitor 5m     web-02
               zone: b 1/4 (pin)
  wave-1       6 hosts, monitor 10m    web-01, web-03, web-04, web-05, web-06, web-08
               zone: a 2/4, b 2/4, c 2/4 (spread_by, at most 2 per zone, never a whole zone)
  zone-a       2 hosts, monitor 10m    web-07, web-10
               zone: a 2/4 (by)
  zone-b       1 hosts, monitor 10m    web-11
               zone: b 1/4 (by)
  zone-c       2 hosts, monitor 10m    web-09, web-12
               zone: c 2/4 (by)
  judged on metrics every 15s, against each host's 30m baseline (120 polls) before its wave's apply; warm-up 2m (8 polls)
`
	if text.String() != want {
		t.Errorf("plan text\n got:\n%s\nwant:\n%s", text.String(), want)
	}
	var b bytes.Buffer
	if err := p.WriteJSON(&b, spec.Name); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Waves []struct {
			Name     string   `json:"name"`
			Hosts    []string `json:"hosts"`
			Monitor  string   `json:"monitor"`
			Topology struct {
				Key         string `json:"key"`
				Mode        string `json:"mode"`
				MaxPerValue int    `json:"max_per_value"`
				NeverWhole  bool   `json:"never_whole"`
				Values      []struct {
					Value string   `json:"value"`
					Hosts []string `json:"hosts"`
					Total int      `json:"total"`
				} `json:"values"`
			} `json:"topology"`
		} `json:"waves"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	w := got.Waves[1]
	if w.Name != "wave-1" || w.Monitor != "10m" || len(w.Hosts) != 6 || w.Topology.Key != "zone" || w.Topology.Mode != "spread_by" ||
		w.Topology.MaxPerValue != 2 || !w.Topology.NeverWhole || len(w.Topology.Values) != 3 ||
		w.Topology.Values[2].Value != "c" || strings.Join(w.Topology.Values[2].Hosts, ",") != "web-03,web-06" || w.Topology.Values[2].Total != 4 {
		t.Errorf("plan --json wave-1: %+v", w)
	}
	if m := got.Waves[2].Topology.Mode; got.Waves[2].Name != "zone-a" || m != "by" {
		t.Errorf("plan --json waves[2]: %s mode %q, want zone-a mode by", got.Waves[2].Name, m)
	}
}
