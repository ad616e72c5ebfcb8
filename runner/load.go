package runner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
)

// required lists, per type, the keys that must be written. The decoder
// checks them and Schema writes them into the JSON Schema.
var required = map[string][]string{
	"Spec":          {"name", "targets", "apply", "metrics", "policies"},
	"Apply":         {"playbook"},
	"Metrics":       {"queries"},
	"ConsulTargets": {"service"},
	"Query":         {"query"},
	"Alert":         {"type"},
	"Target":        {"name"},
	"BasicAuth":     {"username"},
}

// enums lists, per Type.key, the allowed values of a string (or of each
// string of a list).
var enums = map[string][]string{
	"Revert.scope":            {ScopeHost, ScopeWave, ScopeAll},
	"Revert.mode":             {ModeRevert, ModeFreeze},
	"Revert.on_interrupt":     {ModeRevert, ModeFreeze},
	"Query.worse":             {"higher", "lower"},
	"Detection.sensitivity":   {"low", "medium", "high"},
	"PolicyRef.on_no_data":    {policies.NoDataFail, policies.NoDataHold, policies.NoDataIgnore},
	"Alert.type":              ports.AlertTypes(),
	"Alert.on":                ports.Events(),
	"State.store":             {"local", "consul", "nomad"},
	"Snapshot.on_failure":     {"skip_host", "continue"},
	"ConsulTargets.name_from": {"node", "service_id"},
}

// secretFields are the Type.key whose values never appear in an error.
var secretFields = map[string]bool{
	"Metrics.url":          true, // may carry user:password@
	"Metrics.push_url":     true,
	"Metrics.bearer_token": true,
	"Metrics.headers":      true,
	"BasicAuth.password":   true,
	"Alert.url":            true,
}

// hostValueFields are the fields metrics.host_value may use (hostKeys
// renders it), sorted; snapshot hooks may use ports.SnapshotFields().
var hostValueFields = []string{".Host.Address", ".Host.Meta.*", ".Host.Name", ".Host.Port", ".Host.Vars.*"}

// Load reads, validates and compiles the rollout spec at path and the
// policies it names. env looks up ${VAR} references (nil: os.LookupEnv).
//
// Every problem of the spec and its policy files is reported at once: the
// error is then a policies.ErrorList of *policies.PosError sorted by file,
// line and column, and nothing else is returned. On success the spec has
// its defaults filled in and its relative paths resolved against its
// directory, and the policies are compiled.
func Load(path string, env func(string) (string, bool)) (*Spec, []*policies.Policy, error) {
	return loadFile(path, env, false)
}

// LoadAllowUnset is Load for when the secrets are not there (a pull
// request, rendering a Nomad job): an unset ${NAME} without a default
// stands for an unknown value, and the problems of a value that holds one
// are not reported; every other check runs. Spec.Env says which
// references were unset. A spec loaded so must not be run.
func LoadAllowUnset(path string, env func(string) (string, bool)) (*Spec, []*policies.Policy, error) {
	return loadFile(path, env, true)
}

func loadFile(path string, env func(string) (string, bool), allowUnset bool) (*Spec, []*policies.Policy, error) {
	if env == nil {
		env = os.LookupEnv
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// "read spec x: is a directory", not "read spec x: read x: is a
		// directory": the path is said once.
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == path {
			err = pe.Err
		}
		return nil, nil, fmt.Errorf("read spec %s: %w", path, err)
	}
	return loadData(path, data, env, os.ReadFile, allowUnset)
}

// load is Load over data already read; readFile reads policy files and
// checks that referenced files exist.
func load(file string, data []byte, env func(string) (string, bool), readFile func(string) ([]byte, error)) (*Spec, []*policies.Policy, error) {
	return loadData(file, data, env, readFile, false)
}

func loadData(file string, data []byte, env func(string) (string, bool), readFile func(string) ([]byte, error), allowUnset bool) (*Spec, []*policies.Policy, error) {
	d := newDecoder(file)
	d.data = data
	d.allowUnset = allowUnset
	root := d.parse(data)
	if root == nil {
		return nil, nil, policies.SortErrors(d.errs)
	}
	if isNull(root) {
		d.errorf(root, "the spec is empty")
		return nil, nil, policies.SortErrors(d.errs)
	}
	if isPolicyFile(root) {
		d.errorf(root, "this is a policy file, not a rollout spec: name it in a rollout.yaml's policies (policies: [{file: %s}]) and validate that spec", filepath.Base(file))
		return nil, nil, policies.SortErrors(d.errs)
	}
	d.expandTree(root, env, "", 0)
	d.nodes[""] = root
	var s Spec
	s.File = file
	s.Dir = filepath.Dir(file)
	s.Env = d.env
	d.value(root, reflectValue(&s), "", false, 0)
	d.validate(&s, readFile)
	pols := d.compilePolicies(&s, readFile)
	if d.allowUnset {
		d.errs = slices.DeleteFunc(d.errs, func(err error) bool {
			var e *policies.PosError
			return errors.As(err, &e) && e.File == d.file && d.unknown[[2]int{e.Line, e.Col}]
		})
	}
	d.dropUnexpanded()
	if abs, err := filepath.Abs(s.Dir); err == nil {
		s.Dir = abs
	}
	applyDefaults(&s, d.has)
	// Every problem at once: a stage too short is reported with the
	// others, unless a value it is judged on is itself wrong.
	if !d.stageInputWrong(len(s.Waves)) {
		d.validateStages(&s)
	}
	if len(d.errs) == 0 {
		// The detection engine's own check, which a run makes when it
		// builds the engine: anything the checks above let through is
		// refused here, before a run takes its lock.
		if cfg, err := detectorConfig(&s); err == nil {
			if err := cfg.Validate(); err != nil {
				d.errorf(d.at("detection"), "detection: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
		}
	}
	if len(d.errs) > 0 {
		return nil, nil, policies.SortErrors(d.errs)
	}
	s.pos = make(map[string]policies.Pos, len(d.nodes))
	for p, n := range d.nodes {
		if n != nil && n.Line > 0 {
			s.pos[p] = policies.Pos{Line: n.Line, Col: n.Column}
		}
	}
	d.warnBaseline(&s)
	for _, p := range pols {
		s.Warnings = append(s.Warnings, p.Warnings...)
	}
	if s.Apply.Version == "" {
		v, err := defaultVersion(&s.Apply)
		if err != nil {
			d.errorf(d.at("apply.playbook"), "apply.version is not set and cannot be computed from the playbook: %v", err)
			return nil, nil, policies.SortErrors(d.errs)
		}
		s.Apply.Version = v
	}
	return &s, pols, nil
}

// dropUnexpanded drops the problems found in a value whose ${NAME} did
// not expand ("${NAME}" is not one of higher, lower; file ${NAME} does
// not exist): the expansion's error says what is wrong there.
func (d *decoder) dropUnexpanded() {
	if len(d.unexpanded) == 0 {
		return
	}
	at := map[[2]int]bool{}
	for pe := range d.unexpanded {
		at[[2]int{pe.Line, pe.Col}] = true
	}
	d.errs = slices.DeleteFunc(d.errs, func(err error) bool {
		e, ok := err.(*policies.PosError)
		return ok && !d.unexpanded[e] && e.File == d.file && at[[2]int{e.Line, e.Col}]
	})
}

// stageInputWrong says whether a problem was found in a value that
// validateStages reads (an interval, a warm-up, a monitor) or in a
// mapping that holds one, or the value is unknown (an unset ${NAME}
// under LoadAllowUnset): judged on a default instead, a stage could be
// reported too short for no reason.
func (d *decoder) stageInputWrong(waves int) bool {
	paths := []string{"metrics", "metrics.interval", "detection", "detection.warmup", "canary", "canary.monitor", "bake", "waves"}
	for i := range waves {
		paths = append(paths, fmt.Sprintf("waves[%d]", i), fmt.Sprintf("waves[%d].monitor", i))
	}
	for _, p := range paths {
		for _, n := range []*yaml.Node{d.nodes[p], d.keys[p]} {
			// With LoadAllowUnset, a value that holds an unset ${NAME}
			// is unknown: it is not judged on the default either.
			if d.hasErrorAt(n) || n != nil && d.unknown[[2]int{n.Line, n.Column}] {
				return true
			}
		}
	}
	return false
}

// isPolicyFile reports whether root is a policy file's document (one
// policy, or a list of them) rather than a spec: a mapping with a rule
// and neither targets nor apply, or a list whose entries all have a rule.
func isPolicyFile(root *yaml.Node) bool {
	rule := func(n *yaml.Node) (rule, spec bool) {
		n = policies.ResolveAlias(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return false, false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch n.Content[i].Value {
			case "rollback_when", "host_rollback_when":
				rule = true
			case "targets", "apply":
				spec = true
			}
		}
		return rule, spec
	}
	root = policies.ResolveAlias(root)
	switch root.Kind {
	case yaml.MappingNode:
		r, s := rule(root)
		return r && !s
	case yaml.SequenceNode:
		for _, n := range root.Content {
			if r, _ := rule(n); !r {
				return false
			}
		}
		return len(root.Content) > 0
	}
	return false
}

// validateStages refuses, never silently accepts, a stage that cannot roll
// back a clear step: detection decides a step on its second poll at the
// earliest (two polls in a row beyond the baseline, one spike never
// decides; at the stage's end, with no poll left to hold the burst), and
// the second must come after the warm-up. A monitoring
// period of exactly 0s is a deliberate choice (the wave is watched only
// while its playbook runs) and is kept; the bake has no warm-up.
func (d *decoder) validateStages(s *Spec) {
	interval := s.Metrics.Interval.D()
	if interval <= 0 {
		return
	}
	warm := warmupPolls(s.Detection.Warmup.D(), interval)
	check := func(path string, monitor time.Duration, warm int) {
		need := policies.DecisionPolls(warm)
		// Rounded up, without overflowing at the longest duration.
		polls := int(monitor / interval)
		if monitor%interval != 0 {
			polls++
		}
		if monitor == 0 || polls >= need {
			return
		}
		why := "two polls in a row"
		if warm > 0 {
			why = fmt.Sprintf("two polls in a row, the second after detection.warmup %s (%d poll(s))", fmtDuration(s.Detection.Warmup.D()), warm)
		}
		d.errorf(d.at(path), "%s %s is too short to roll back a clear step: at metrics.interval %s it holds %d poll(s), and a decision needs %d (%s); the smallest monitor that can is %s",
			path, fmtDuration(monitor), fmtDuration(interval), polls, need, why, fmtDuration(time.Duration(need)*interval))
	}
	check("canary.monitor", s.Canary.Monitor.D(), warm)
	for i, w := range s.Waves {
		// A wave without its own monitor has the canary's, reported
		// there.
		if p := fmt.Sprintf("waves[%d].monitor", i); d.has(p) {
			check(p, w.Monitor.D(), warm)
		}
	}
	check("bake", s.Bake.D(), 0)

	// Too long: a dry run replays every poll of a window, and a report
	// keeps every poll of a stage; 300000h at 1m ran for hours and took
	// gigabytes. A window that long is a slip of the unit.
	long := func(path string, window time.Duration) {
		if polls := window / interval; d.has(path) && polls > maxWindowPolls {
			d.errorf(d.at(path), "%s %s holds %d polls at metrics.interval %s, more than %d (%s): a dry run replays, and a report keeps, every poll",
				path, fmtDuration(window), polls, fmtDuration(interval), maxWindowPolls, fmtDuration(maxWindowPolls*interval))
		}
	}
	long("canary.monitor", s.Canary.Monitor.D())
	for i, w := range s.Waves {
		long(fmt.Sprintf("waves[%d].monitor", i), w.Monitor.D())
	}
	long("bake", s.Bake.D())
	long("detection.hold_limit", s.Detection.HoldLimit.D())
	long("metrics.baseline", s.Metrics.Baseline.D())
}

// maxWindowPolls bounds a monitoring period, a bake, a hold and a
// baseline, in polls of metrics.interval: 100000 is 17 days at 15s.
const maxWindowPolls = 100_000

// minInterval is the shortest metrics.interval: every poll queries the
// metrics source once per query.
const minInterval = time.Second

// shortBaselinePolls: a written metrics.baseline that holds fewer polls
// draws a warning (warnBaseline).
const shortBaselinePolls = 24

// warnBaseline warns about a written metrics.baseline that holds fewer
// than shortBaselinePolls polls: it is valid, and it rolls back good
// changes more often (README, Detection: how long a baseline).
func (d *decoder) warnBaseline(s *Spec) {
	interval, base := s.Metrics.Interval.D(), s.Metrics.Baseline.D()
	if interval <= 0 || !d.has("metrics.baseline") {
		return
	}
	polls := int(base / interval)
	if polls >= shortBaselinePolls {
		return
	}
	s.Warnings = append(s.Warnings, d.posf(d.at("metrics.baseline"),
		"metrics.baseline %s holds %d poll(s) at metrics.interval %s, fewer than %d: in the evaluation, baselines of 24, 12 and 6 polls "+
			"rolled back 1.5, 2.3 and 4 times as many good changes as %d polls (README, Detection: how long a baseline); %s holds %d",
		fmtDuration(base), polls, fmtDuration(interval), shortBaselinePolls, defaultBaselinePolls,
		fmtDuration(time.Duration(defaultBaselinePolls)*interval), defaultBaselinePolls))
}

// parse reads the single YAML document of data, reporting syntax errors
// with their line.
func (d *decoder) parse(data []byte) *yaml.Node {
	if pe := policies.OddLineBreak(d.file, data); pe != nil {
		d.errs = append(d.errs, pe)
		return nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "the spec is empty")
			return nil
		}
		d.syntaxError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "a spec holds one YAML document; remove the second one")
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		d.errorf(nil, "the spec is empty")
		return nil
	}
	return doc.Content[0]
}

// syntaxError records a YAML syntax error at its line and column.
func (d *decoder) syntaxError(err error) {
	d.errs = append(d.errs, policies.YAMLError(d.file, "YAML syntax", err, d.data))
}

// validate checks what the types alone cannot: one target source, hosts
// that exist, waves that can hold hosts, templates, files, ranges.
func (d *decoder) validate(s *Spec, readFile func(string) ([]byte, error)) {
	d.validateTargets(s, readFile)
	d.validateWaves(s)
	d.checkFile("apply.playbook", s.Apply.Playbook, s.Dir, readFile)
	d.validatePreflight(s)
	d.checkFile("apply.vault_password_file", s.Apply.VaultPasswordFile, s.Dir, readFile)
	d.checkFile("revert.playbook", s.Revert.Playbook, s.Dir, readFile)
	d.checkFile("revert.vault_password_file", s.Revert.VaultPasswordFile, s.Dir, readFile)
	for _, p := range []string{"revert.extra_vars", "revert.forks", "revert.vault_password_file"} {
		if d.has(p) && s.Revert.Playbook == "" {
			d.errorf(d.at(p), "%s: only the revert playbook uses it; set revert.playbook", p)
		}
	}

	for _, p := range []string{"apply.forks", "revert.forks", "revert.snapshot.concurrency", "metrics.error_limit",
		"detection.smoothing", "detection.min_baseline_samples", "detection.no_data_ticks"} {
		d.atLeastOne(p)
	}
	for _, p := range []string{"metrics.interval", "metrics.baseline", "metrics.timeout", "apply.timeout",
		"revert.snapshot.timeout", "revert.verify"} {
		if d.has(p) && d.nodes[p].Kind == yaml.ScalarNode && d.nodes[p].Value != "" && isZeroDuration(d.nodes[p].Value) {
			d.errorf(d.nodes[p], "%s must be longer than 0s", p)
		}
	}
	if iv := s.Metrics.Interval.D(); iv > 0 && iv < minInterval {
		d.errorf(d.at("metrics.interval"), "metrics.interval %s is shorter than %s: every poll queries the metrics source once per query", fmtDuration(iv), fmtDuration(minInterval))
	}
	for _, f := range []struct {
		path     string
		v        *float64
		positive bool
	}{
		{"detection.allowance", s.Detection.Allowance, false},
		{"detection.threshold", s.Detection.Threshold, true},
		{"detection.rel_floor", s.Detection.RelFloor, false},
		{"detection.abs_floor", s.Detection.AbsFloor, true},
	} {
		d.checkFloat(f.path, f.v, f.positive)
	}
	d.checkAllowance(s)
	for _, q := range s.Metrics.Queries {
		d.checkFloat("metrics.queries."+q.Name+".rel_floor", q.RelFloor, false)
		d.checkFloat("metrics.queries."+q.Name+".abs_floor", q.AbsFloor, false)
		d.checkFloat("metrics.queries."+q.Name+".tolerance_abs", q.ToleranceAbs, false)
	}

	if s.Revert.Snapshot != nil {
		sn := s.Revert.Snapshot
		if (len(sn.Create) > 0) != (len(sn.Restore) > 0) {
			d.errorf(d.at("revert.snapshot"), "revert.snapshot: create and restore go together (a snapshot that is never restored, or restored without being taken, is a mistake)")
		}
		for _, hook := range []struct {
			name string
			argv []string
		}{{"create", sn.Create}, {"restore", sn.Restore}, {"delete", sn.Delete}} {
			for i, arg := range hook.argv {
				p := fmt.Sprintf("revert.snapshot.%s[%d]", hook.name, i)
				// What fails on the sample fails on every host: refused
				// here, not by the run after it took its lock.
				if t := d.checkTemplate(p, arg, ports.SnapshotFields()); t != nil {
					if err := ports.TrySnapshotArg(t, i); err != nil {
						d.errorf(d.at(p), "%s: %s", p, templateExecMsg(err))
					}
				}
			}
		}
	}
	if d.has("metrics.host_value") {
		// Static hosts are known now: one the template cannot render
		// (a meta key it lacks) is refused here, not by the run after
		// it took its lock (discovered hosts: discoverPlan).
		if t := d.checkTemplate("metrics.host_value", s.Metrics.HostValue, hostValueFields); t != nil {
			for _, h := range StaticHosts(s) {
				if _, err := hostKey(t, h); err != nil {
					d.errorf(d.at("metrics.host_value"), "metrics.host_value: cannot be rendered for host %s: %s", h.Name, templateExecMsg(err))
					break
				}
			}
		}
	}
	if s.Metrics.PushURL != "" {
		d.checkURL("metrics.push_url", s.Metrics.PushURL)
	}
	if s.Metrics.URL != "" {
		d.checkURL("metrics.url", s.Metrics.URL)
	}
	if s.Metrics.BearerToken != "" && s.Metrics.BasicAuth != nil && !d.hasErrorAt(d.nodes["metrics.basic_auth"]) {
		d.errorf(d.at("metrics.basic_auth"), "metrics: set bearer_token or basic_auth, not both")
	}
	for i, a := range s.Alerts {
		p := fmt.Sprintf("alerts[%d]", i)
		switch {
		case a.Type == "github" && a.URL != "":
			d.errorf(d.at(p+".url"), "%s.url: a github alert writes workflow annotations and takes no url", p)
		case a.Type != "github" && a.Type != "" && a.URL == "":
			d.errorf(d.at(p), "%s: a %s alert needs a url", p, a.Type)
		case a.URL != "":
			d.checkURL(p+".url", a.URL)
		}
	}
	switch s.State.Store {
	case "consul", "nomad":
		if d.has("state.dir") {
			d.errorf(d.at("state.dir"), "state.dir: only a local store has a directory (store is %s)", s.State.Store)
		}
	default:
		if d.has("state.prefix") {
			d.errorf(d.at("state.prefix"), "state.prefix: only the consul and nomad stores have a key prefix")
		}
	}
}

func (d *decoder) validateTargets(s *Spec, readFile func(string) ([]byte, error)) {
	t := s.Targets
	var sources []string
	if d.has("targets.static") {
		sources = append(sources, "static")
	}
	if d.has("targets.inventory") {
		sources = append(sources, "inventory")
	}
	if t.Consul != nil {
		sources = append(sources, "consul")
	}
	if t.Nomad != nil {
		sources = append(sources, "nomad")
	}
	misspelt := d.misspelt("targets", "static", "inventory", "consul", "nomad")
	if d.has("targets") || d.nodes["targets"] != nil {
		switch {
		case len(sources) == 0 && (misspelt || isNull(d.nodes["targets"]) || d.hasErrorAt(d.nodes["targets"])):
			// "unknown key "stati" in targets (did you mean "static"?)",
			// "targets must not be empty" or a type error says it.
		case len(sources) == 0:
			d.errorf(d.at("targets"), "targets: give exactly one source: static, inventory, consul or nomad")
		case len(sources) > 1:
			d.errorf(d.at("targets"), "targets: give exactly one source, not %s", strings.Join(sources, " and "))
		}
	}
	if d.has("targets.static") && len(t.Static) == 0 && d.nodes["targets.static"].Kind == yaml.SequenceNode {
		d.errorf(d.at("targets.static"), "targets.static must list at least one host")
	}
	if d.has("targets.group") && t.Inventory == "" {
		d.errorf(d.at("targets.group"), "targets.group: a group selects hosts of an inventory; set targets.inventory")
	}
	d.checkFile("targets.inventory", t.Inventory, s.Dir, readFile)

	first := map[string]int{}
	for i, h := range t.Static {
		p := fmt.Sprintf("targets.static[%d]", i)
		if h.Name == "" {
			continue
		}
		if j, dup := first[h.Name]; dup {
			d.errorf(d.at(p), "%s: duplicate host %q (also targets.static[%d])", p, h.Name, j)
			continue
		}
		first[h.Name] = i
		if h.Port < 0 || h.Port > 65535 {
			d.errorf(d.at(p+".port"), "%s.port: %d is not a port (1-65535)", p, h.Port)
		}
	}

	hs := s.Canary.Hosts
	if len(t.Static) == 0 {
		return
	}
	// With a static list the canary can be checked against the hosts.
	seenCanary := map[string]int{}
	for i, name := range hs.Names {
		if j, dup := seenCanary[name]; dup {
			p := fmt.Sprintf("canary.hosts[%d]", i)
			d.errorf(d.at(p), "%s: duplicate host %q (also canary.hosts[%d])", p, name, j)
			continue
		}
		seenCanary[name] = i
		if _, ok := first[name]; !ok {
			p := fmt.Sprintf("canary.hosts[%d]", i)
			msg := fmt.Sprintf("%s: canary host %q is not in targets.static", p, name)
			if c := closest(name, slices.Sorted(maps.Keys(first))); c != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", c)
			}
			d.errorf(d.at(p), "%s", msg)
		}
	}
	if hs.Tag != "" && !anyHost(t.Static, func(h Target) bool { return contains(h.Tags, hs.Tag) }) {
		d.errorf(d.at("canary.hosts.tag"), "canary.hosts.tag: no host in targets.static has tag %q", hs.Tag)
	}
	if len(hs.Meta) > 0 && !anyHost(t.Static, func(h Target) bool { return metaMatch(ports.Host{Meta: h.Meta, Vars: h.Vars}, hs.Meta) }) {
		d.errorf(d.at("canary.hosts.meta"), "canary.hosts.meta: no host in targets.static has all of this meta")
	}
	if hs.Size != nil && hs.Size.Count > len(t.Static) {
		d.errorf(d.at("canary.hosts"), "canary.hosts: %d hosts, but targets.static has only %d", hs.Size.Count, len(t.Static))
	}
}

// validateWaves checks each wave's keys (size or by, and the topology
// keys that go with spread_by) and reports waves that can never contain a
// host. With a static target list it makes the plan as a run would
// (MakePlan) and reports what the plan cannot do: an empty wave, hosts no
// wave reaches, a topology limit the hosts cannot meet.
// validatePreflight checks the diff gate's limits: they judge a check,
// so they need one, and their patterns must be globs.
func (d *decoder) validatePreflight(s *Spec) {
	p := s.Preflight
	if p.MaxChangedTasks != nil && *p.MaxChangedTasks < 0 {
		d.errorf(d.at("preflight.max_changed_tasks"), "preflight.max_changed_tasks must be 0 or more, got %d", *p.MaxChangedTasks)
	}
	for _, list := range []struct {
		key      string
		patterns []string
	}{{"forbid_changes", p.ForbidChanges}, {"expect_changes", p.ExpectChanges}} {
		for i, pat := range list.patterns {
			at := fmt.Sprintf("preflight.%s[%d]", list.key, i)
			if _, err := path.Match(pat, ""); err != nil || pat == "" {
				d.errorf(d.at(at), "%s: %q is not a glob (path.Match: *, ?, [...])", at, pat)
			}
		}
	}
	if p.Check == "" {
		for _, k := range []string{"max_changed_tasks", "forbid_changes", "expect_changes"} {
			if d.has("preflight." + k) {
				d.errorf(d.at("preflight."+k), "preflight.%s judges the pre-flight check; set preflight.check: true (the canary) or all", k)
			}
		}
	}
}

func (d *decoder) validateWaves(s *Spec) {
	if d.has("canary.pin") {
		hs := s.Canary.Hosts
		switch {
		case len(s.Canary.Pin) == 0 && !d.hasErrorAt(d.nodes["canary.pin"]):
			d.errorf(d.at("canary.pin"), "canary.pin: give the meta key and value to pin the canary to, e.g. {zone: eu-1a}")
		case len(hs.Names) > 0 || hs.Tag != "" || len(hs.Meta) > 0:
			d.errorf(d.at("canary.pin"), "canary.pin: pins a count or share of hosts (canary.hosts: 1, \"10%%\"); names, {tag} and {meta} already say which hosts")
		}
	}
	names := map[string]int{}
	shaped := true // every wave has a size or a by
	for i, w := range s.Waves {
		p := fmt.Sprintf("waves[%d]", i)
		d.atLeastOne(p + ".max_per_value")
		for _, k := range []string{"spread_by", "by"} {
			if d.has(p+"."+k) && d.nodes[p+"."+k].Value == "" {
				d.errorf(d.at(p+"."+k), "%s.%s must not be empty", p, k)
			}
		}
		switch {
		case w.By != "" && d.has(p+".size"):
			d.errorf(d.at(p+".by"), "%s: by makes one wave per value of %s, each with that value's hosts; remove size", p, w.By)
		case w.By != "" && (w.SpreadBy != "" || d.has(p+".max_per_value") || d.has(p+".never_whole")):
			d.errorf(d.at(p+".by"), "%s: by takes each value's hosts in a wave of their own; spread_by, max_per_value and never_whole go with size", p)
		case w.By == "" && !d.has(p+".size"):
			if d.nodes[p] != nil && d.nodes[p].Kind == yaml.MappingNode && !d.misspelt(p, "size") {
				d.errorf(d.at(p), "missing required key \"size\" in %s (or by: <meta key>, one wave per value)", p)
			}
			shaped = false
		case !d.has(p + ".spread_by"):
			for _, k := range []string{"max_per_value", "never_whole"} {
				if d.has(p + "." + k) {
					d.errorf(d.at(p+"."+k), "%s.%s limits a spread_by wave; set spread_by: <meta key>", p, k)
				}
			}
		}
		if w.Size == (Size{}) && w.By == "" {
			shaped = false // a wave without a valid size is reported already
		}
		if w.Name == "" {
			continue
		}
		if j, dup := names[w.Name]; dup {
			d.errorf(d.at(p+".name"), "%s.name: duplicate wave name %q (also waves[%d])", p, w.Name, j)
		}
		names[w.Name] = i
		if w.Name == "canary" {
			d.errorf(d.at(p+".name"), "%s.name: \"canary\" is the canary group's name", p)
		}
	}
	static := s.Targets.Static
	if len(static) == 0 || d.nodes["targets.inventory"] != nil || s.Targets.Consul != nil || s.Targets.Nomad != nil {
		// Hosts are discovered at run time: only a wave after a 100% or a
		// by wave is certainly empty.
		for i := range s.Waves {
			prev := s.Waves[max(i-1, 0)]
			if i > 0 && (prev.Size.Percent == 100 || prev.By != "") {
				p := fmt.Sprintf("waves[%d]", i)
				what := "100% of the hosts after the canary"
				if prev.By != "" {
					what = "every host left, by " + prev.By
				}
				d.errorf(d.at(p), "%s can never contain a host: waves[%d] already takes %s", p, i-1, what)
				break
			}
		}
		return
	}
	if !shaped || len(uniq(targetNames(static))) != len(static) {
		return
	}
	p, err := MakePlan(s, StaticHosts(s))
	var pe *PlanError
	switch {
	case errors.As(err, &pe):
		// The canary's hosts, tag and meta are checked against the list
		// by validateTargets.
		if !strings.HasPrefix(pe.Path, "canary.hosts") {
			d.errorf(d.at(pe.Path), "%s", pe.Msg)
		}
	case err == nil && len(p.empty) > 0:
		e := p.empty[0]
		d.errorf(d.at(e.path), "%s can never contain a host: %s", e.path, e.why)
	}
}

func targetNames(ts []Target) []string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

// checkFile reports a referenced file that does not exist or cannot be
// read, at the key's value.
func (d *decoder) checkFile(path, file, dir string, readFile func(string) ([]byte, error)) {
	if file == "" {
		return
	}
	if _, err := readFile(resolvePath(dir, file)); err != nil {
		reason := "cannot be read"
		if errors.Is(err, fs.ErrNotExist) {
			reason = "does not exist"
		}
		d.errorf(d.at(path), "%s: file %s %s", path, resolvePath(dir, file), reason)
	}
}

func resolvePath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func (d *decoder) atLeastOne(path string) {
	n := d.nodes[path]
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return
	}
	var i int
	if _, err := fmt.Sscan(n.Value, &i); err == nil && i < 1 {
		d.errorf(n, "%s must be at least 1, got %d", path, i)
	}
}

func isZeroDuration(s string) bool {
	var d Duration
	dec := newDecoder("")
	dec.duration(&yaml.Node{Kind: yaml.ScalarNode, Value: s}, reflectValue(&d), "")
	return len(dec.errs) == 0 && d == 0
}

func (d *decoder) checkFloat(path string, v *float64, positive bool) {
	switch {
	case v == nil:
	case positive && *v <= 0:
		d.errorf(d.at(path), "%s must be over 0", path)
	case *v < 0:
		d.errorf(d.at(path), "%s must not be negative", path)
	}
}

// checkURL reports a URL that is not http(s)://host; the URL itself may
// hold credentials and is never printed.
func (d *decoder) checkURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.errorf(d.at(path), "%s: expected an http:// or https:// URL with a host (value not shown)", path)
	}
}

// checkTemplate parses a text/template and reports fields outside allowed
// (sorted; ".Host.Meta.*" allows any key under .Host.Meta). It returns
// the template when it has no problem, nil otherwise.
func (d *decoder) checkTemplate(path, text string, allowed []string) *template.Template {
	t, err := template.New("t").Option("missingkey=error").Parse(text)
	if err != nil {
		// "template: t:1: unclosed action" -> "unclosed action"
		msg := templateErrPrefix.ReplaceAllString(err.Error(), "")
		d.errorf(d.at(path), "%s: bad template: %s", path, msg)
		return nil
	}
	if bad := ports.UnknownFields(t, allowed); len(bad) > 0 {
		d.errorf(d.at(path), "%s: unknown field %s in template (allowed: %s)", path, strings.Join(bad, ", "), strings.Join(allowed, " "))
		return nil
	}
	return t
}

var (
	templateErrPrefix  = regexp.MustCompile(`^template: t:\d+:(\d+:)? `)
	templateExecPrefix = regexp.MustCompile(`^template: \S+:\d+:\d+: executing "[^"]*" `)
)

// templateExecMsg is an execution error of a template checked by
// checkTemplate without the template's name and position, which name
// nothing the user wrote: `template: t:1:2: executing "t" at <index .Host.Name
// 99>: error calling index: …` -> `at <index .Host.Name 99>: error calling index: …`.
func templateExecMsg(err error) string {
	return templateExecPrefix.ReplaceAllString(err.Error(), "")
}

// checkAllowance refuses a detection.allowance at or above the preset's
// z_cap, the most one poll adds to a score before the allowance is taken
// off it: no deviation could ever accumulate, and the detection engine
// refuses such a configuration (it did so only once a run held its lock).
func (d *decoder) checkAllowance(s *Spec) {
	a := s.Detection.Allowance
	if a == nil || *a < 0 || d.hasErrorAt(d.nodes["detection.allowance"]) {
		return
	}
	sens := s.Detection.Sensitivity
	cfg, err := policies.Preset(sens)
	if err != nil {
		return // reported as a bad sensitivity
	}
	if sens == "" {
		sens = policies.SensitivityMedium
	}
	if *a >= cfg.ZCap {
		d.errorf(d.at("detection.allowance"), "detection.allowance %g must be below %g, the most one poll adds to a score at sensitivity %s: at or above it no deviation ever counts",
			*a, cfg.ZCap, sens)
	}
}

// compilePolicies parses the policy files, builds the inline policies and
// compiles every one against the query names, merging their errors.
func (d *decoder) compilePolicies(s *Spec, readFile func(string) ([]byte, error)) []*policies.Policy {
	metrics := make([]string, len(s.Metrics.Queries))
	for i, q := range s.Metrics.Queries {
		metrics[i] = q.Name
	}
	opts := policies.CompileOptions{Metrics: metrics}
	var srcs []policies.Source
	for i, ref := range s.Policies {
		p := fmt.Sprintf("policies[%d]", i)
		inline := ref.Name != "" || ref.RollbackWhen != "" || ref.HostRollbackWhen != "" || ref.OnNoData != ""
		switch {
		case ref.File != "" && inline:
			d.errorf(d.at(p), "%s: give either file or an inline policy (name, rollback_when, ...), not both", p)
		case ref.File != "":
			file := resolvePath(s.Dir, ref.File)
			data, err := readFile(file)
			if err != nil {
				reason := "cannot be read"
				if errors.Is(err, fs.ErrNotExist) {
					reason = "does not exist"
				}
				d.errorf(d.at(p+".file"), "%s.file: file %s %s", p, file, reason)
				continue
			}
			fileSrcs, err := policies.ParseFile(file, data)
			d.mergeErrors(err, d.at(p+".file"), p+".file")
			srcs = append(srcs, fileSrcs...)
		case inline:
			ok := true
			if ref.Name == "" {
				if !d.misspelt(p, "name") { // else "did you mean "name"?" says it
					d.errorf(d.at(p), "missing required key \"name\" in %s", p)
				}
				ok = false
			}
			if ref.RollbackWhen == "" && ref.HostRollbackWhen == "" {
				if !d.misspelt(p, "rollback_when", "host_rollback_when") {
					d.errorf(d.at(p), "%s: an inline policy needs rollback_when or host_rollback_when", p)
				}
				ok = false
			}
			if ref.OnNoData != "" && !contains(enums["PolicyRef.on_no_data"], ref.OnNoData) {
				ok = false // reported by the decoder
			}
			if !ok {
				continue // compiling would report the same problems again
			}
			node := d.at(p)
			onNoData := ref.OnNoData
			if onNoData == "" {
				onNoData = policies.NoDataFail
			}
			srcs = append(srcs, policies.Source{
				Name:             ref.Name,
				File:             d.file,
				Pos:              policies.Pos{Line: node.Line, Col: node.Column},
				RollbackWhen:     d.expr(p+".rollback_when", ref.RollbackWhen),
				HostRollbackWhen: d.expr(p+".host_rollback_when", ref.HostRollbackWhen),
				OnNoData:         onNoData,
			})
		default:
			misspelt := d.misspelt(p, "file", "name", "rollback_when", "host_rollback_when")
			if d.nodes[p] != nil && d.nodes[p].Kind == yaml.MappingNode && !misspelt {
				d.errorf(d.at(p), "%s: give file or an inline policy (name, rollback_when, ...)", p)
			}
		}
	}
	names := map[string]policies.Source{}
	var pols []*policies.Policy
	for _, src := range srcs {
		// ParseFile reports duplicates inside one policy file.
		if first, dup := names[src.Name]; dup && src.Name != "" && (first.File != src.File || src.File == d.file) {
			d.errs = append(d.errs, &policies.PosError{File: src.File, Line: max(src.Pos.Line, 1), Col: src.Pos.Col,
				Msg: fmt.Sprintf("duplicate policy name %q (also %s:%d)", src.Name, first.File, first.Pos.Line)})
		}
		names[src.Name] = src
		pol, err := policies.Compile(src, opts)
		at := &yaml.Node{Line: max(src.Pos.Line, 1), Column: src.Pos.Col}
		if src.File != d.file {
			// An error without a position in another file: report it
			// at that file's policy.
			d.mergeErrorsIn(err, src.File, at, "policy "+src.Name)
		} else {
			d.mergeErrors(err, at, "policy "+src.Name)
		}
		if err == nil && pol != nil {
			pols = append(pols, pol)
		}
	}
	return pols
}

// expr is an inline expression with the position and style of its scalar.
func (d *decoder) expr(path, text string) policies.Expr {
	if text == "" {
		return policies.Expr{}
	}
	return policies.NewExpr(d.at(path), d.data)
}

func (d *decoder) mergeErrors(err error, at *yaml.Node, what string) {
	d.mergeErrorsIn(err, d.file, at, what)
}

// mergeErrorsIn adds err's problems: the PosErrors as they are, any other
// error at a position in file, so that every error has a line.
func (d *decoder) mergeErrorsIn(err error, file string, at *yaml.Node, what string) {
	if err == nil {
		return
	}
	var list policies.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			d.mergeErrorsIn(e, file, at, what)
		}
		return
	}
	var pe *policies.PosError
	if errors.As(err, &pe) && pe.Line > 0 {
		d.errs = append(d.errs, pe)
		return
	}
	line, col := 1, 0
	if at != nil && at.Line > 0 {
		line, col = at.Line, at.Column
	}
	d.errs = append(d.errs, &policies.PosError{File: file, Line: line, Col: col, Msg: fmt.Sprintf("%s: %v", what, err)})
}

// Defaults, filled in once the spec is valid.
const (
	defaultCanaryMonitor      = Duration(5 * time.Minute)
	defaultForks              = 10
	defaultApplyTimeout       = Duration(30 * time.Minute)
	defaultInterval           = Duration(15 * time.Second)
	defaultBaseline           = Duration(30 * time.Minute)
	defaultBaselinePolls      = 48
	defaultHostLabel          = "instance"
	defaultHostValue          = "{{.Host.Name}}"
	defaultQueryTimeout       = Duration(10 * time.Second)
	defaultErrorLimit         = 3
	defaultMinBaselineSamples = 10
	defaultNoDataTicks        = 4
	defaultWarmup             = Duration(2 * time.Minute)
	defaultTolerance          = Share(0.10)
	defaultSnapshotConc       = 4
	defaultSnapshotTimeout    = Duration(5 * time.Minute)
)

// applyDefaults fills what the spec left out (see the field comments in
// spec.go) and resolves relative paths against s.Dir.
// written reports whether the spec wrote a key path, so that an explicit
// zero ("monitor: 0s") is kept.
func applyDefaults(s *Spec, written func(path string) bool) {
	if s.Canary.Hosts.Size == nil && len(s.Canary.Hosts.Names) == 0 && s.Canary.Hosts.Tag == "" && len(s.Canary.Hosts.Meta) == 0 {
		s.Canary.Hosts.Size = &Size{Count: 1}
	}
	if s.Canary.Monitor == 0 && !written("canary.monitor") {
		s.Canary.Monitor = defaultCanaryMonitor
	}
	if len(s.Waves) == 0 {
		s.Waves = []Wave{{Size: Size{Percent: 100}}}
	}
	for i := range s.Waves {
		w := &s.Waves[i]
		w.Name = waveName(i, *w)
		if w.Monitor == 0 && !written(fmt.Sprintf("waves[%d].monitor", i)) {
			w.Monitor = s.Canary.Monitor
		}
	}
	a := &s.Apply
	a.Playbook = resolvePath(s.Dir, a.Playbook)
	a.VaultPasswordFile = resolvePath(s.Dir, a.VaultPasswordFile)
	if a.Forks == 0 {
		a.Forks = defaultForks
	}
	if a.Timeout == 0 {
		a.Timeout = defaultApplyTimeout
	}
	t := &s.Targets
	t.Inventory = resolvePath(s.Dir, t.Inventory)
	if t.Inventory != "" && t.Group == "" {
		t.Group = "all"
	}
	for i := range t.Static {
		if t.Static[i].Address == "" {
			t.Static[i].Address = t.Static[i].Name
		}
	}
	if c := t.Consul; c != nil {
		if c.PassingOnly == nil {
			yes := true
			c.PassingOnly = &yes
		}
		if c.NameFrom == "" {
			c.NameFrom = "node"
		}
	}
	m := &s.Metrics
	if m.Interval == 0 {
		m.Interval = defaultInterval
	}
	if m.Baseline == 0 {
		// 48 polls, at least 30 minutes: on the evaluation's data a
		// shorter baseline rolls back more no-change rollouts (README,
		// Detection: how long a baseline).
		m.Baseline = max(defaultBaseline, defaultBaselinePolls*m.Interval)
	}
	if m.HostLabel == "" {
		m.HostLabel = defaultHostLabel
	}
	if m.HostValue == "" {
		m.HostValue = defaultHostValue
	}
	if m.Timeout == 0 {
		m.Timeout = defaultQueryTimeout
	}
	if m.ErrorLimit == 0 {
		m.ErrorLimit = defaultErrorLimit
	}
	for i := range m.Queries {
		if m.Queries[i].Worse == "" {
			m.Queries[i].Worse = "higher"
		}
	}
	det := &s.Detection
	if det.Sensitivity == "" {
		det.Sensitivity = "medium"
	}
	if det.MinBaselineSamples == 0 {
		det.MinBaselineSamples = defaultMinBaselineSamples
	}
	if det.NoDataTicks == 0 {
		det.NoDataTicks = defaultNoDataTicks
	}
	if det.Warmup == 0 && !written("detection.warmup") {
		det.Warmup = defaultWarmup
	}
	if det.Tolerance == 0 && !written("detection.tolerance") {
		det.Tolerance = defaultTolerance
	}
	r := &s.Revert
	r.Playbook = resolvePath(s.Dir, r.Playbook)
	if r.Playbook != "" {
		r.VaultPasswordFile = resolvePath(s.Dir, r.VaultPasswordFile)
		if r.VaultPasswordFile == "" {
			r.VaultPasswordFile = a.VaultPasswordFile
		}
		if r.Forks == 0 {
			r.Forks = a.Forks
		}
	}
	if r.Scope == "" {
		r.Scope = ScopeWave
	}
	if r.Mode == "" {
		r.Mode = ModeRevert
	}
	if r.OnInterrupt == "" {
		r.OnInterrupt = ModeRevert
	}
	if r.Verify == 0 {
		r.Verify = defaultVerify(s)
	}
	if sn := r.Snapshot; sn != nil {
		if sn.Concurrency == 0 {
			sn.Concurrency = defaultSnapshotConc
		}
		if sn.Timeout == 0 {
			sn.Timeout = defaultSnapshotTimeout
		}
		if sn.OnFailure == "" {
			sn.OnFailure = "skip_host"
		}
	}
	for i := range s.Policies {
		s.Policies[i].File = resolvePath(s.Dir, s.Policies[i].File)
	}
	for i := range s.Alerts {
		if len(s.Alerts[i].On) == 0 {
			s.Alerts[i].On = ports.DefaultEvents()
		}
	}
	st := &s.State
	if st.Store == "" {
		st.Store = "local"
	}
	switch st.Store {
	case "local":
		if st.Dir == "" {
			st.Dir = ".rollguard"
		}
		st.Dir = resolvePath(s.Dir, st.Dir)
	default:
		if st.Prefix == "" {
			st.Prefix = "rollguard/" + s.Name
		}
	}
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

func anyHost(hs []Target, f func(Target) bool) bool {
	for _, h := range hs {
		if f(h) {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// metaMatch says whether h has every value of want, each as a topology
// key reads it: its meta, else its Ansible host variable (an inventory
// host has no meta).
func metaMatch(h ports.Host, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := topologyValue(h, k); !ok || hv != v {
			return false
		}
	}
	return true
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
