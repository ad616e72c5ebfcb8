package runner

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/*-bad.yaml")

// testEnv is the environment the testdata specs are loaded with.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"GITHUB_SHA": "abc123",
		"VM_TOKEN":   "s3cret-token",
		"ALERT_URL":  "https://hooks.example.com/T0/secret",
		"FORKS":      "",
	}[name]
	return v, ok
}

func TestLoadGood(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file     string
		policies []string
		check    func(t *testing.T, s *Spec)
	}{
		{
			file:     "static-good.yaml",
			policies: []string{"latency-regression", "error-spike", "cpu-host", "fleet-threshold"},
			check: func(t *testing.T, s *Spec) {
				eq(t, "target forms", s.Targets.Static, []Target{
					{Name: "web-1", Address: "web-1"},
					{Name: "web-2", Address: "web-2"},
					{Name: "web-3", Address: "10.0.0.3", Port: 8080, Vars: map[string]any{"nginx_role": "edge"}, Tags: []string{"canary"}, Meta: map[string]string{"rack": "r1"}},
					{Name: "web-4", Address: "10.0.0.4"},
					{Name: "web-5", Address: "web-5"},
				})
				eq(t, "canary names", s.Canary.Hosts, HostSelector{Names: []string{"web-1", "web-3"}})
				eq(t, "waves", s.Waves, []Wave{
					{Name: "first-half", Size: Size{Count: 2}, Monitor: Duration(150 * time.Second)},
					{Name: "wave-2", Size: Size{Percent: 100}, Monitor: Duration(10 * time.Minute)},
				})
				eq(t, "version from ${GITHUB_SHA}", s.Apply.Version, "abc123")
				eq(t, "metrics url default of ${VM_URL:-...}", s.Metrics.URL, "http://127.0.0.1:8428")
				eq(t, "extra_vars", s.Apply.ExtraVars, map[string]any{
					"nginx_worker_connections": 4096, "upstreams": []any{"a", "b"}, "tuning": map[string]any{"keepalive": 65}})
				eq(t, "vault file resolved", s.Apply.VaultPasswordFile, filepath.Join(dir, "vault-pass.txt"))
				eq(t, "revert playbook resolved", s.Revert.Playbook, filepath.Join(dir, "playbooks/revert.yml"))
				eq(t, "revert playbook's forks and vault default to apply's, extra vars do not",
					[]any{s.Revert.Forks, s.Revert.VaultPasswordFile, s.Revert.ExtraVars}, []any{s.Apply.Forks, s.Apply.VaultPasswordFile, map[string]any(nil)})
				eq(t, "snapshot", *s.Revert.Snapshot, Snapshot{
					Create:      []string{"virsh", "snapshot-create-as", "{{.Host.Name}}", "rollguard-{{.RunID}}"},
					Restore:     []string{"virsh", "snapshot-revert", "{{.Host.Name}}", "{{.Snapshot}}"},
					Delete:      []string{"virsh", "snapshot-delete", "{{.Host.Address}}", "rollguard-{{.RunID}}"},
					Concurrency: 2, Timeout: Duration(2 * time.Minute), OnFailure: "continue",
				})
				var names []string
				for _, q := range s.Metrics.Queries {
					names = append(names, q.Name+":"+q.Worse)
				}
				eq(t, "queries in written order", names, []string{"latency_p95:higher", "error_rate:higher", "throughput:lower", "cpu:higher"})
				eq(t, "abs_floor", *s.Metrics.Queries[1].AbsFloor, 0.001)
				eq(t, "detection", s.Detection.Sensitivity+" "+s.Detection.HoldLimit.D().String(), "high 10m0s")
				eq(t, "alert on default", s.Alerts[1].On, []string{"degraded", "rollback", "halted", "verify_failed"})
				eq(t, "state dir resolved", s.State.Dir, filepath.Join(dir, "state"))
				eq(t, "revert", [4]string{s.Revert.Scope, s.Revert.Mode, s.Revert.OnInterrupt, s.Revert.Verify.D().String()}, [4]string{"all", "revert", "freeze", "1m0s"})
				eq(t, "max_failed 10% of 15 and of 9 hosts", []int{s.Revert.MaxFailed.Of(15), s.Revert.MaxFailed.Of(9)}, []int{1, 0})
			},
		},
		{
			file:     "minimal-good.yaml",
			policies: []string{"any-degraded"},
			check: func(t *testing.T, s *Spec) {
				eq(t, "File", s.File, filepath.Join("testdata", "minimal-good.yaml"))
				eq(t, "Dir", s.Dir, dir)
				eq(t, "canary default", s.Canary, Canary{Hosts: HostSelector{Size: &Size{Count: 1}}, Monitor: Duration(5 * time.Minute)})
				eq(t, "waves default", s.Waves, []Wave{{Name: "wave-1", Size: Size{Percent: 100}, Monitor: Duration(5 * time.Minute)}})
				if !strings.HasPrefix(s.Apply.Version, "h-") {
					t.Errorf("apply.version unset: %q, want the computed h-<hash>", s.Apply.Version)
				}
				eq(t, "apply", s.Apply, Apply{Playbook: filepath.Join(dir, "playbooks/site.yml"), Forks: 10, Timeout: Duration(30 * time.Minute), Version: s.Apply.Version})
				m := s.Metrics
				m.Queries = nil
				eq(t, "metrics defaults", m, Metrics{Interval: Duration(15 * time.Second), Baseline: Duration(30 * time.Minute),
					HostLabel: "instance", HostValue: "{{.Host.Name}}", Timeout: Duration(10 * time.Second), ErrorLimit: 3})
				eq(t, "worse default", s.Metrics.Queries[0].Worse, "higher")
				eq(t, "detection defaults", s.Detection, Detection{Sensitivity: "medium", MinBaselineSamples: 10, NoDataTicks: 4,
					Tolerance: 0.10, Warmup: Duration(2 * time.Minute)})
				// verify: no range window, 2 x smoothing 2 x 15 s.
				eq(t, "revert defaults", s.Revert, Revert{Scope: "wave", Mode: "revert", OnInterrupt: "revert", Verify: Duration(60 * time.Second)})
				eq(t, "state default", s.State, State{Store: "local", Dir: filepath.Join(dir, ".rollguard")})
			},
		},
		{
			file:     "inventory-good.yaml",
			policies: []string{"host-errors"},
			check: func(t *testing.T, s *Spec) {
				eq(t, "inventory resolved", s.Targets.Inventory, filepath.Join(dir, "inventories/prod.ini"))
				eq(t, "group", s.Targets.Group, "web")
				eq(t, "canary share", *s.Canary.Hosts.Size, Size{Percent: 10})
				eq(t, "explicit monitor 0s kept", s.Waves[1].Monitor, Duration(0))
				eq(t, "default monitor from canary", s.Waves[0].Monitor, Duration(5*time.Minute))
				eq(t, "$$ escapes $", s.Apply.Version, "${not-expanded}")
				eq(t, "empty default", *s.Metrics.BasicAuth, BasicAuth{Username: "reader"})
				eq(t, "policy expression not expanded, block style kept", s.Policies[0].HostRollbackWhen, "host.metrics.p99.z > 6\n&& host.metrics.p99.samples > 0\n")
			},
		},
		{
			file:     "consul-good.yaml",
			policies: []string{"latency-regression"},
			check: func(t *testing.T, s *Spec) {
				no := false
				eq(t, "consul", *s.Targets.Consul, ConsulTargets{Service: "api", Tags: []string{"prod"}, Datacenter: "dc1",
					PassingOnly: &no, NodeMeta: map[string]string{"rack": "r1"}, NameFrom: "service_id"})
				eq(t, "canary tag", s.Canary.Hosts, HostSelector{Tag: "canary"})
				eq(t, "forks from ${FORKS:-20} with FORKS empty", s.Apply.Forks, 20)
				eq(t, "wave monitor follows canary", s.Waves[0].Monitor, Duration(3*time.Minute))
				eq(t, "state", s.State, State{Store: "consul", Prefix: "rollguard/api"})
			},
		},
		{
			file:     "nomad-good.yaml",
			policies: []string{"error-spike", "cpu-host"},
			check: func(t *testing.T, s *Spec) {
				eq(t, "nomad", *s.Targets.Nomad, NomadTargets{NodePool: "default", NodeClass: "web", Meta: map[string]string{"role": "web"}})
				eq(t, "canary meta", s.Canary.Hosts, HostSelector{Meta: map[string]string{"role": "web", "canary": "true"}})
				eq(t, "wave names", s.Waves[0].Name+","+s.Waves[1].Name, "wave-1,wave-2")
				eq(t, "state prefix default", s.State, State{Store: "nomad", Prefix: "rollguard/nomad-nodes"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, pols, err := Load(filepath.Join("testdata", tt.file), testEnv)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var names []string
			for _, p := range pols {
				names = append(names, p.Name)
			}
			eq(t, "policies", names, tt.policies)
			tt.check(t, s)
		})
	}
}

// TestLoadBad compares every error of each *-bad.yaml with its golden file.
func TestLoadBad(t *testing.T) {
	files, err := filepath.Glob("testdata/*-bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad specs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, _, err := Load(file, testEnv)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			checkPosErrors(t, err)
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./runner -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// checkPosErrors asserts err is a list of PosErrors with lines, in order.
func checkPosErrors(t *testing.T, err error) {
	t.Helper()
	var list policies.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T, not a policies.ErrorList: %v", err, err)
	}
	prev := policies.PosError{}
	for _, e := range list {
		pe, ok := e.(*policies.PosError)
		if !ok {
			t.Fatalf("error %q is %T, not a *policies.PosError", e, e)
		}
		if pe.Line <= 0 || pe.File == "" {
			t.Errorf("error %q has no file or line", pe)
		}
		if pe.File == prev.File && (pe.Line < prev.Line || pe.Line == prev.Line && pe.Col < prev.Col) {
			t.Errorf("error %q comes after %q: not in file order", pe, &prev)
		}
		prev = *pe
	}
}

// TestManyMistakesAtOnce is the promise of the loader: one pass finds all.
func TestManyMistakesAtOnce(t *testing.T) {
	_, _, err := Load("testdata/many-bad.yaml", testEnv)
	var list policies.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got %v", err)
	}
	kinds := map[string]bool{}
	for _, e := range list {
		msg := e.(*policies.PosError).Msg
		for _, k := range []string{"duplicate host", "not in targets.static", "unknown key", "host count", "expected a duration",
			"does not exist", "expected an integer", "is not one of"} {
			if strings.Contains(msg, k) {
				kinds[k] = true
			}
		}
	}
	if len(kinds) < 8 || len(list) < 10 {
		t.Errorf("got %d errors of %d kinds, want at least 10 of 8:\n%v", len(list), len(kinds), err)
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	_, _, err := Load("testdata/secrets-bad.yaml", testEnv)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	if n := len(err.(policies.ErrorList)); n < 8 {
		t.Errorf("got %d errors, want one for each of the 8 bad fields:\n%v", n, err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a secret leaked into the errors:\n%v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, _, err := Load("testdata/no-such-spec.yaml", testEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}

// TestLoadErrorPositions pins the line:col of single mistakes, each in an
// otherwise valid spec.
func TestLoadErrorPositions(t *testing.T) {
	const base = `name: x
targets:
  static: [a, b, c]
apply:
  playbook: playbooks/site.yml
metrics:
  queries:
    q: {query: up}
policies:
  - name: p
    rollback_when: 'fleet.degraded > 0'
`
	f := func(extra, want string) {
		t.Helper()
		_, _, err := load("testdata/x.yaml", []byte(base+extra), testEnv, os.ReadFile)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("with %q:\ngot  %s\nwant %s", extra, got, want)
		}
	}
	f("", "")
	f("canary: {hosts: 4}\n", "testdata/x.yaml:12:17: canary.hosts: 4 hosts, but targets.static has only 3")
	f("canary: {hosts: 0%}\n", "testdata/x.yaml:12:17: canary.hosts: share must be over 0% and at most 100%, got 0%")
	f("canary: {hosts: [a, a]}\n", "testdata/x.yaml:12:21: canary.hosts[1]: duplicate host \"a\" (also canary.hosts[0])")
	f("waves: [{size: 50%}, {size: 1}]\n", "")
	f("waves: [{size: 1}]\n", "testdata/x.yaml:12:8: waves cover 1 of the 2 hosts after the canary; 1 would never receive the change (make the last wave's size 100%)")
	f("waves: [{size: 2}, {size: 100%}]\n", "testdata/x.yaml:12:20: waves[1] can never contain a host: the waves before it take all 2 hosts after the canary")
	f("canary: {hosts: [a, b, c]}\nwaves: [{size: 1}]\n", "testdata/x.yaml:13:9: waves[0] can never contain a host: the canary takes all 3 hosts")
	f("canary: {hosts: {meta: {k: v}}}\n", "testdata/x.yaml:12:24: canary.hosts.meta: no host in targets.static has all of this meta")
	f("canary: {hosts: 1, pin: {zone: x}}\n", "testdata/x.yaml:12:25: canary: pinned to zone=x, which 0 of the 3 targets have; the canary takes 1")
	f("waves: [{size: 1, spread_by: zone}, {by: rack}]\n", "testdata/x.yaml:12:9: waves[0] (spread_by: zone): 2 of the 2 hosts it draws from have no meta or host variable \"zone\": b, c; give every host a zone, or plan this wave without it")
	f("canary: {hosts: {color: red}}\n", "testdata/x.yaml:12:18: unknown key \"color\" in canary.hosts (allowed: tag, meta)")
	f("preflight: {check: all, max_changed_tasks: 3, forbid_changes: [secrets.yml, \"/etc/*\"], expect_changes: [\"nginx*\"]}\n", "")
	f("preflight: {check: true}\n", "")
	f("preflight: {check: maybe}\n", "testdata/x.yaml:12:20: preflight.check: expected true (check the canary), false, canary or all, got \"maybe\"")
	f("preflight: {max_changed_tasks: 2}\n", "testdata/x.yaml:12:32: preflight.max_changed_tasks judges the pre-flight check; set preflight.check: true (the canary) or all")
	f("preflight: {check: true, max_changed_tasks: -1, forbid_changes: [\"[a\"], expect_changes: [x, \"\"]}\n",
		"testdata/x.yaml:12:45: preflight.max_changed_tasks must be 0 or more, got -1\n"+
			"testdata/x.yaml:12:66: preflight.forbid_changes[0]: \"[a\" is not a glob (path.Match: *, ?, [...])\n"+
			"testdata/x.yaml:12:93: preflight.expect_changes[1]: \"\" is not a glob (path.Match: *, ?, [...])")
	f("bake: 5\n", "testdata/x.yaml:12:7: bake: expected a duration like \"90s\" or \"5m\", got \"5\" (a duration needs a unit)")
	f("detection: {threshold: 0, allowance: -1}\n", "testdata/x.yaml:12:24: detection.threshold must be over 0\ntestdata/x.yaml:12:38: detection.allowance must not be negative")
	// One problem, not a second one for the zero the bad value is not.
	f("detection: {threshold: abc}\n", "testdata/x.yaml:12:24: detection.threshold: expected a number, got \"abc\"")
	f("detection: {threshold: .inf, abs_floor: .nan}\n", "testdata/x.yaml:12:24: detection.threshold: expected a finite number, got \".inf\"\n"+
		"testdata/x.yaml:12:41: detection.abs_floor: expected a finite number, got \".nan\"")
	f("detection: {smoothing: 1.5}\n", "testdata/x.yaml:12:24: detection.smoothing: expected an integer, got \"1.5\"")
	f("revert: {snapshot: {create: [x]}}\n", "testdata/x.yaml:12:20: revert.snapshot: create and restore go together (a snapshot that is never restored, or restored without being taken, is a mistake)")
	// What a run found bad only after it took its lock is refused here,
	// at its place: a hook that fails on every host, a detection the
	// engine refuses.
	f("revert: {snapshot: {create: [x], restore: [y], delete: [' {{- \"\" -}} ']}}\n", "testdata/x.yaml:12:57: revert.snapshot.delete[0]: the program name is empty")
	f("revert: {snapshot: {create: [x, '{{index .Host.Name 99}}'], restore: [y]}}\n", "testdata/x.yaml:12:33: revert.snapshot.create[1]: at <index .Host.Name 99>: error calling index: index out of range: 99")
	f("detection: {abs_floor: 0}\n", "testdata/x.yaml:12:24: detection.abs_floor must be over 0")
	f("detection: {allowance: 4}\n", "testdata/x.yaml:12:24: detection.allowance 4 must be below 4, the most one poll adds to a score at sensitivity medium: at or above it no deviation ever counts")
	f("detection: {sensitivity: low, allowance: 4}\n", "")
	f("revert: {known_good: yes}\n", "testdata/x.yaml:12:22: revert.known_good: expected true or false, got \"yes\"")
	f("revert: {known_good: true, extra_vars: {a: 1}, forks: 2}\n",
		"testdata/x.yaml:12:40: revert.extra_vars: only the revert playbook uses it; set revert.playbook\n"+
			"testdata/x.yaml:12:55: revert.forks: only the revert playbook uses it; set revert.playbook")
	f("revert: {playbook: playbooks/revert.yml, forks: 0, vault_password_file: nope.txt}\n",
		"testdata/x.yaml:12:49: revert.forks must be at least 1, got 0\n"+
			"testdata/x.yaml:12:73: revert.vault_password_file: file testdata/nope.txt does not exist")
	f("revert: {max_failed: 0}\n", "")
	f("revert: {max_failed: -1}\n", "testdata/x.yaml:12:22: revert.max_failed: host count must be at least 0, got -1")
	f("revert: {max_failed: 120%}\n", "testdata/x.yaml:12:22: revert.max_failed: share must be from 0% to 100%, got 120%")
	f("revert: {max_failed: [1]}\n", "testdata/x.yaml:12:22: revert.max_failed: expected a host count (3) or a share (\"10%\"), got a list")
	f("apply: {}\n", "testdata/x.yaml:12:1: duplicate key \"apply\" in the spec (first at line 4)")
	f("alerts: [{type: github, url: 'https://x'}]\n", "testdata/x.yaml:12:30: alerts[0].url: a github alert writes workflow annotations and takes no url")
	f("metrics2: {}\n", "testdata/x.yaml:12:1: unknown key \"metrics2\" in the spec (did you mean \"metrics\"?)")
	f("state: {store: consul, dir: x}\n", "testdata/x.yaml:12:29: state.dir: only a local store has a directory (store is consul)")
	// Never silent: a stage too short to roll back a clear step at its
	// interval and warm-up is refused at its monitor, with the smallest
	// monitor that would do; 0s (watched only while applying) is kept.
	f("canary: {monitor: 2m}\ndetection: {warmup: 1m}\n", "")
	f("canary: {monitor: 30s}\n", "testdata/x.yaml:12:19: canary.monitor 30s is too short to roll back a clear step: at metrics.interval 15s it holds 2 poll(s), and a decision needs 9 (two polls in a row, the second after detection.warmup 2m (8 poll(s))); the smallest monitor that can is 2m15s")
	f("canary: {monitor: 30s}\ndetection: {warmup: 0s}\n", "")
	f("canary: {monitor: 15s}\ndetection: {warmup: 0s}\n", "testdata/x.yaml:12:19: canary.monitor 15s is too short to roll back a clear step: at metrics.interval 15s it holds 1 poll(s), and a decision needs 2 (two polls in a row); the smallest monitor that can is 30s")
	f("waves: [{size: 100%, monitor: 0s}]\n", "")
	f("waves: [{size: 100%, monitor: 1m}]\n", "testdata/x.yaml:12:31: waves[0].monitor 1m is too short to roll back a clear step: at metrics.interval 15s it holds 4 poll(s), and a decision needs 9 (two polls in a row, the second after detection.warmup 2m (8 poll(s))); the smallest monitor that can is 2m15s")
	f("bake: 15s\n", "testdata/x.yaml:12:7: bake 15s is too short to roll back a clear step: at metrics.interval 15s it holds 1 poll(s), and a decision needs 2 (two polls in a row); the smallest monitor that can is 30s")
	// Every problem at once: a stage too short is reported with the
	// others, unless a value it is judged on is wrong itself.
	f("canary: {monitor: 30s}\nrevert: {scope: none}\n", "testdata/x.yaml:12:19: canary.monitor 30s is too short to roll back a clear step: at metrics.interval 15s it holds 2 poll(s), and a decision needs 9 (two polls in a row, the second after detection.warmup 2m (8 poll(s))); the smallest monitor that can is 2m15s\n"+
		"testdata/x.yaml:13:17: revert.scope: \"none\" is not one of host, wave, all")
	f("canary: {monitor: 30s}\ndetection: {warmup: 1x}\n", "testdata/x.yaml:13:21: detection.warmup: expected a duration like \"90s\" or \"5m\", got \"1x\"")
	f("x: &a [*a]\n", "testdata/x.yaml:12:1: unknown key \"x\" in the spec (allowed: name, targets, canary, waves, bake, apply, preflight, revert, metrics, detection, policies, alerts, state)")
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %#v\nwant %#v", what, got, want)
	}
}

// FuzzLoad checks that no input makes Load panic and that every error it
// reports for non-empty input is a PosError with a line.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _, err := load("testdata/fuzz.yaml", data, testEnv, os.ReadFile)
		if err == nil {
			if s == nil || s.Name == "" || len(s.Policies) == 0 || len(s.Metrics.Queries) == 0 {
				t.Fatalf("no error, but the spec lacks required keys: %+v", s)
			}
			// A valid static spec always plans: validate made the plan.
			if len(s.Targets.Static) > 0 {
				if _, err := MakePlan(s, StaticHosts(s)); err != nil {
					t.Fatalf("valid static spec does not plan: %v", err)
				}
			}
			return
		}
		var list policies.ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error is %T, not a non-empty ErrorList: %v", err, err)
		}
		for _, e := range list {
			pe, ok := e.(*policies.PosError)
			if !ok {
				t.Fatalf("error %q is %T, not a *policies.PosError", e, e)
			}
			if len(data) > 0 && pe.Line <= 0 {
				t.Fatalf("error %q has no line", pe)
			}
		}
	})
}

// TestLoadOddInputs feeds inputs a fuzzer takes long to find: every one
// must come back as positioned errors, never a panic or a hang.
func TestLoadOddInputs(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x]\n"
	for i, prev := 0, "a"; i < 8; i++ {
		name := string(rune('b' + i))
		bomb += name + ": &" + name + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = name
	}
	tests := []struct {
		name, in, first string
	}{
		{"empty", "", "testdata/odd.yaml:1:1: the spec is empty"},
		{"comment only", "# nothing\n", "testdata/odd.yaml:1:1: the spec is empty"},
		{"null", "~\n", "testdata/odd.yaml:1:1: the spec is empty"},
		{"list", "- a\n", "testdata/odd.yaml:1:1: expected a mapping with keys name, targets, canary, waves, bake, apply, preflight, revert, metrics, detection, policies, alerts, state, got a list"},
		{"scalar", "hello\n", "testdata/odd.yaml:1:1: expected a mapping with keys name, targets, canary, waves, bake, apply, preflight, revert, metrics, detection, policies, alerts, state, got a string"},
		// A password file given as the spec: its text is not printed.
		{"password file", "hunter2\n", "testdata/odd.yaml:1:1: expected a mapping with keys name, targets, canary, waves, bake, apply, preflight, revert, metrics, detection, policies, alerts, state, got a string"},
		{"unknown alias", "name: *x\n", "testdata/odd.yaml:1:7: YAML syntax: unknown anchor 'x' referenced"},
		{"merge key", "<<: {name: x}\n", "testdata/odd.yaml:1:1: merge keys (<<) are not supported"},
		{"tab indent", "name: x\n\ttargets: {}\n", "testdata/odd.yaml:2:1: YAML syntax: found a tab character that violates indentation"},
		{"deep nesting", "name: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n", "testdata/odd.yaml:1:1: missing required key \"targets\" in the spec"},
		{"alias bomb", bomb + "name: x\n", "testdata/odd.yaml:1:1: unknown key \"a\" in the spec (allowed: name, targets, canary, waves, bake, apply, preflight, revert, metrics, detection, policies, alerts, state)"},
		{"binary", "name: !!binary aGk=\n", "testdata/odd.yaml:1:1: missing required key \"targets\" in the spec"},
		{"key is a list", "[a]: b\n", "testdata/odd.yaml:1:1: keys must be strings"},
		// A policy file given as the spec: one problem that says so, not
		// six missing and unknown keys.
		{"policy file", "# latency\nname: p\nrollback_when: 'fleet.degraded > 0'\n", "testdata/odd.yaml:2:1: this is a policy file, not a rollout spec: name it in a rollout.yaml's policies (policies: [{file: odd.yaml}]) and validate that spec"},
		{"policy list", "- {name: p, rollback_when: 'fleet.degraded > 0'}\n- {name: q, host_rollback_when: 'host.score > 9'}\n", "testdata/odd.yaml:1:1: this is a policy file, not a rollout spec: name it in a rollout.yaml's policies (policies: [{file: odd.yaml}]) and validate that spec"},
		// A spec with a stray rule key is still a spec.
		{"spec with a rule", "name: x\ntargets: {static: [a]}\nrollback_when: y\n", "testdata/odd.yaml:1:1: missing required key \"apply\" in the spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load("testdata/odd.yaml", []byte(tt.in), testEnv, os.ReadFile)
			if err == nil {
				t.Fatal("no error")
			}
			checkPosErrors(t, err)
			if first := err.(policies.ErrorList)[0].Error(); first != tt.first {
				t.Errorf("first error:\ngot  %s\nwant %s", first, tt.first)
			}
		})
	}
}

func TestLoadEmptyEntries(t *testing.T) {
	const spec = `name: x
targets:
  static: [a, ~]
apply: {playbook: playbooks/site.yml}
metrics: {queries: {q: {query: up}}}
waves: [~]
policies: [~]
`
	_, _, err := load("testdata/x.yaml", []byte(spec), testEnv, os.ReadFile)
	want := `testdata/x.yaml:3:15: targets.static[1]: empty list entry
testdata/x.yaml:6:9: waves[0]: empty list entry
testdata/x.yaml:7:12: policies[0]: empty list entry`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func BenchmarkLoad(b *testing.B) {
	data, err := os.ReadFile("testdata/static-good.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := load("testdata/static-good.yaml", data, testEnv, os.ReadFile); err != nil {
			b.Fatal(err)
		}
	}
}

// YAML-level problems of a spec (the parser finds them before any key is
// read) are reported at file:line:col, where the problem is, and a spec
// file's policy file likewise.
func TestLoadYAMLErrorPositions(t *testing.T) {
	for _, c := range []struct{ name, data, want string }{
		{"unclosed bracket", "name: x\ntargets:\n  static: [a, b\ncanary: {hosts: 1}\n", "x.yaml:3:11:"},
		{"tab", "name: x\ntargets:\n\tstatic: [a]\n", "x.yaml:3:1:"},
		{"bad indentation", "name: x\ncanary:\n  hosts: 1\n    monitor: 5m\n", "x.yaml:4:12:"},
		{"dedent", "name: x\ntargets:\n  static: [a]\n canary: 1\n", "x.yaml:4:2:"},
		{"empty file", "", "x.yaml:1:1: the spec is empty"},
		{"binary garbage", "\x7fELF\x02\x01\x01\x00\x00", "x.yaml:1:1:"},
		{"NUL byte", "name: x\ntargets: \x00\n", "x.yaml:2:10:"},
		// The parser reports an unknown alias once it has read the next
		// token: the error was on the line after the alias.
		{"unknown alias", "name: x\npolicies:\n  - name: *nope\n    rollback_when: 'fraction(hosts, .degraded) >= 0.3'\n", "x.yaml:3:11: YAML syntax: unknown anchor 'nope' referenced"},
		{"unknown alias, a comment naming it first", "# *nope\nname: *nope\ntargets: {static: [a]}\n", "x.yaml:2:7: YAML syntax: unknown anchor 'nope' referenced"},
		{"nesting too deep", "name: x\ntargets: " + strings.Repeat("{a: ", 10001), "x.yaml:2:"},
		{"${VAR} unquoted in a flow mapping", "name: x\napply: {playbook: p.yml}\nalerts: [{type: webhook, url: ${ALERT_URL}}]\n",
			"x.yaml:3:31: YAML syntax: did not find expected ',' or '}' (inside [...] or {...}, quote a value that holds ${...}: \"${VAR}\")"},
		// A prefix cut inside the closed mapping of line 3 fails with the
		// same message: the problem was put there, not on line 6.
		{"${VAR} unquoted in a flow mapping, after others", "name: x\ntargets: {static: [a]}\napply: {playbook: /srv/ansible/web/playbooks/site.yml}\nmetrics: {queries: {q: {query: up}}}\n" +
			"policies: [{name: p, rollback_when: \"fleet.size > 0\"}]\nalerts: [{type: webhook, url: ${ALERT_URL}}]\n",
			"x.yaml:6:"},
		// An invisible U+2028 split the key in two (unknown key "ries"
		// at 4:1, a line the editor does not have).
		{"line separator", "name: x\nmetrics:\n  que\u2028ries: {}\n", "x.yaml:3:6: invisible character U+2028: YAML reads it as a line break, an editor does not; remove it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := load("x.yaml", []byte(c.data), testEnv, os.ReadFile)
			if err == nil {
				t.Fatal("no error")
			}
			first := err.(policies.ErrorList)[0].Error()
			pe := err.(policies.ErrorList)[0].(*policies.PosError)
			if !strings.HasPrefix(first, c.want) || pe.Col < 1 {
				t.Errorf("first error %s, want it to start %s (with a column)", first, c.want)
			}
		})
	}
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte("name: p\nrollback_when: 'fleet.degraded > 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := "name: x\ntargets: {static: [a]}\napply: {playbook: " + filepath.Join(dir, "p.yaml") + "}\nmetrics: {queries: {l: {query: l}}}\npolicies: [{file: " + pol + "}]\n"
	_, _, err := load("x.yaml", []byte(spec), testEnv, os.ReadFile)
	if err == nil || !strings.Contains(err.Error(), pol+":2:16: invalid YAML") {
		t.Errorf("policy file with an unclosed quote: %v, want %s:2:16", err, pol)
	}
}

// metrics.baseline defaults to 48 polls of metrics.interval, at least 30
// minutes, and a written baseline of fewer than 24 polls draws a warning
// at its position (the spec stays valid: a user may know better).
func TestBaselineDefaultAndWarning(t *testing.T) {
	tests := []struct {
		name, metrics string
		baseline      time.Duration
		warning       string
	}{
		{"15s polls, default", "interval: 15s", 30 * time.Minute, ""},
		{"1m polls, default", "interval: 1m", 48 * time.Minute, ""},
		{"5m polls, default", "interval: 5m", 4 * time.Hour, ""},
		{"5m polls, 2h written (24 polls)", "interval: 5m\n  baseline: 2h", 2 * time.Hour, ""},
		{"5m polls, 30m written", "interval: 5m\n  baseline: 30m", 30 * time.Minute,
			"testdata/x.yaml:8:13: warning: metrics.baseline 30m holds 6 poll(s) at metrics.interval 5m, fewer than 24: in the evaluation, " +
				"baselines of 24, 12 and 6 polls rolled back 1.5, 2.3 and 4 times as many good changes as 48 polls (README, Detection: how long a baseline); 4h holds 48"},
		{"15s polls, 5m written", "interval: 15s\n  baseline: 5m", 5 * time.Minute,
			"testdata/x.yaml:8:13: warning: metrics.baseline 5m holds 20 poll(s) at metrics.interval 15s, fewer than 24: in the evaluation, " +
				"baselines of 24, 12 and 6 polls rolled back 1.5, 2.3 and 4 times as many good changes as 48 polls (README, Detection: how long a baseline); 12m holds 48"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := "name: x\ntargets: {static: [a]}\napply: {playbook: playbooks/site.yml}\ncanary: {monitor: 1h}\npolicies: [{name: p, rollback_when: 'top_mean(hosts, 0.30) > 5'}]\nmetrics:\n  " +
				tt.metrics + "\n  queries: {q: {query: up}}\n"
			s, _, err := load("testdata/x.yaml", []byte(spec), testEnv, os.ReadFile)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "metrics.baseline", s.Metrics.Baseline.D(), tt.baseline)
			// plan says what each wave is judged on.
			p, err := MakePlan(s, StaticHosts(s))
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			p.WriteText(&text)
			if want := fmt.Sprintf("against each host's %s baseline (%d polls)", fmtDuration(tt.baseline), tt.baseline/s.Metrics.Interval.D()); !strings.Contains(text.String(), want) {
				t.Errorf("plan:\n%s\nwant it to say %q", text.String(), want)
			}
			var got []string
			for _, w := range s.Warnings {
				got = append(got, fmt.Sprintf("%s:%d:%d: warning: %s", w.File, w.Line, w.Col, w.Msg))
			}
			if want := []string{tt.warning}; tt.warning == "" && len(got) > 0 || tt.warning != "" && !slices.Equal(got, want) {
				t.Errorf("warnings:\ngot  %q\nwant %q", got, tt.warning)
			}
		})
	}
}
