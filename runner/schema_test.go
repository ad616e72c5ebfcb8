package runner

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// compileSchema compiles the document Schema returns and returns the
// schemas of rollout.yaml, of a policy file and the root.
func compileSchema(t *testing.T) (rollout, policyFile, root *jsonschema.Schema) {
	t.Helper()
	data, err := Schema()
	if err != nil {
		t.Fatalf("Schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		loc string
		out **jsonschema.Schema
	}{{SchemaID + "#/$defs/rollout", &rollout}, {SchemaID + "#/$defs/policy_file", &policyFile}, {SchemaID, &root}} {
		if *s.out, err = c.Compile(s.loc); err != nil {
			t.Fatalf("compile %s: %v", s.loc, err)
		}
	}
	return rollout, policyFile, root
}

// yamlInstance reads a YAML file as a JSON value, after ${VAR} expansion
// as Load does it.
func yamlInstance(t *testing.T, file string) any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	d := newDecoder(file)
	d.expandTree(&doc, testEnv, "", 0)
	var v any
	if err := doc.Decode(&v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	// Load reads a null value (`key:`, or ${VAR:-} expanded to nothing)
	// as an absent key; so does this check.
	j, err := json.Marshal(dropNulls(v))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func globAll(t *testing.T, patterns ...string) []string {
	t.Helper()
	var files []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// TestSchemaAcceptsGoodFiles validates every good spec and policy file of
// the repository against the schema, and checks that each also loads.
func TestSchemaAcceptsGoodFiles(t *testing.T) {
	rollout, policyFile, root := compileSchema(t)
	specs := globAll(t, "testdata/*-good.yaml", "../testdata/*.yaml", "../testdata/*/*.yaml")
	var nspecs, npolicies int
	for _, file := range specs {
		inst := yamlInstance(t, file)
		m, _ := inst.(map[string]any)
		if _, isSpec := m["targets"]; !isSpec {
			continue // a policy file or another fixture
		}
		nspecs++
		if err := rollout.Validate(inst); err != nil {
			t.Errorf("%s does not match $defs/rollout: %v", file, err)
		}
		if err := root.Validate(inst); err != nil {
			t.Errorf("%s does not match the root schema: %v", file, err)
		}
		if _, _, err := Load(file, testEnv); err != nil {
			t.Errorf("%s matches the schema but does not load:\n%v", file, err)
		}
	}
	for _, file := range globAll(t, "testdata/policies/*.yaml", "../testdata/policies/*.yaml") {
		if strings.Contains(file, "broken") {
			continue
		}
		npolicies++
		inst := yamlInstance(t, file)
		if err := policyFile.Validate(inst); err != nil {
			t.Errorf("%s does not match $defs/policy_file: %v", file, err)
		}
		if err := rollout.Validate(inst); err == nil {
			t.Errorf("%s, a policy file, matches $defs/rollout", file)
		}
		if err := root.Validate(inst); err != nil {
			t.Errorf("%s does not match the root schema: %v", file, err)
		}
	}
	if nspecs < 5 || npolicies < 2 {
		t.Errorf("validated %d specs and %d policy files; the globs missed the testdata", nspecs, npolicies)
	}
}

// TestSchemaRejectsShapeErrors checks that the bad specs whose mistakes
// are about shape (unknown keys, types, enums, required keys, one target
// source) fail the schema too, not only Load.
func TestSchemaRejectsShapeErrors(t *testing.T) {
	rollout, _, root := compileSchema(t)
	for _, name := range []string{
		"many-bad.yaml",         // canary.monitr, worse: up, forks: ten
		"unknown-keys-bad.yaml", // target, host, wrose
		"targets-bad.yaml",      // static and inventory
		"waves-bad.yaml",        // name_from: nodes, {tag, meta}
		"required-bad.yaml",     // no name, no targets
		"secrets-bad.yaml",      // bearer_token is a mapping
		"policies-bad.yaml",     // file and name together, {}
		"templates-bad.yaml",    // on_failure: abort
		"topology-bad.yaml",     // by with size, max_per_value without spread_by
	} {
		inst := yamlInstance(t, filepath.Join("testdata", name))
		if err := rollout.Validate(inst); err == nil {
			t.Errorf("%s matches $defs/rollout", name)
		}
		if err := root.Validate(inst); err == nil {
			t.Errorf("%s matches the root schema", name)
		}
	}
}

// TestSchemaForms pins the flexible forms one value at a time.
func TestSchemaForms(t *testing.T) {
	rollout, _, _ := compileSchema(t)
	const base = `{"name":"x","targets":{"static":["a"]},"apply":{"playbook":"p"},` +
		`"metrics":{"queries":{"q":{"query":"up"}}},"policies":[{"name":"p","rollback_when":"true"}]`
	f := func(extra string, ok bool) {
		t.Helper()
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(base + extra + "}"))
		if err != nil {
			t.Fatalf("%s: %v", extra, err)
		}
		if err := rollout.Validate(inst); (err == nil) != ok {
			t.Errorf("%s: valid=%v, want %v (%v)", extra, err == nil, ok, err)
		}
	}
	f(``, true)
	f(`,"canary":{"hosts":2,"monitor":"1h30m"}`, true)
	f(`,"canary":{"hosts":"12.5%"}`, true)
	f(`,"canary":{"hosts":["a"]}`, true)
	f(`,"canary":{"hosts":{"tag":"canary"}}`, true)
	f(`,"canary":{"hosts":{"meta":{"k":"v"}}}`, true)
	f(`,"canary":{"hosts":0}`, false)
	f(`,"canary":{"hosts":"ten"}`, false)
	f(`,"canary":{"hosts":{"tag":"a","meta":{"k":"v"}}}`, false)
	f(`,"canary":{"monitor":"5 minutes"}`, false)
	f(`,"canary":{"monitor":300}`, false)
	f(`,"waves":[{"size":"50%"},{"size":3,"name":"last"}]`, true)
	f(`,"waves":[{"monitor":"5m"}]`, false)
	f(`,"waves":[{"size":"50%","spread_by":"zone","max_per_value":2,"never_whole":true},{"by":"zone"}]`, true)
	f(`,"waves":[{"by":"zone","size":2}]`, false)
	f(`,"waves":[{"by":"zone","never_whole":true}]`, false)
	f(`,"waves":[{"size":2,"max_per_value":2}]`, false)
	f(`,"waves":[{"size":2,"spread_by":"zone","max_per_value":0}]`, false)
	f(`,"waves":[{"by":""}]`, false)
	f(`,"canary":{"hosts":2,"pin":{"zone":"a"}}`, true)
	f(`,"canary":{"pin":{}}`, false)
	f(`,"targets":{"static":[{"name":"a","address":"10.0.0.1","port":22,"vars":{"x":1},"tags":["t"],"meta":{"k":"v"}}]}`, true)
	f(`,"targets":{"static":[{"address":"10.0.0.1"}]}`, false)
	f(`,"targets":{"inventory":"inv.ini","group":"web"}`, true)
	f(`,"targets":{"consul":{"service":"web"},"group":"web"}`, false)
	f(`,"targets":{}`, false)
	f(`,"policies":[{"file":"p.yaml"}]`, true)
	f(`,"policies":[{"file":"p.yaml","name":"x"}]`, false)
	f(`,"policies":[{"name":"x"}]`, false)
	f(`,"alerts":[{"type":"github"}]`, true)
	f(`,"alerts":[{"type":"webhook"}]`, false)
	f(`,"alerts":[{"type":"webhook","url":"https://x","on":["rollback"]}]`, true)
	f(`,"alerts":[{"type":"webhook","url":"https://x","on":["sometimes"]}]`, false)
	f(`,"metrics":{"queries":{"p-95":{"query":"up"}}}`, false)
	f(`,"metrics":{"queries":{}}`, false)
	f(`,"revert":{"scope":"host","mode":"freeze"}`, true)
}

// TestSpecJSONMatchesSchema checks that a loaded spec, written as JSON,
// is itself a valid rollout: durations, sizes and queries marshal in the
// forms the schema describes.
func TestSpecJSONMatchesSchema(t *testing.T) {
	rollout, _, _ := compileSchema(t)
	for _, file := range globAll(t, "testdata/*-good.yaml") {
		s, _, err := Load(file, testEnv)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		j, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		if err := rollout.Validate(inst); err != nil {
			t.Errorf("%s loaded and marshalled does not match the schema: %v\n%s", file, err, j)
		}
	}
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(x)
		}
	case []any:
		for i, x := range v {
			v[i] = dropNulls(x)
		}
	}
	return v
}
