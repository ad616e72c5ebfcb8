package runner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
)

// SchemaID is the $id of the document Schema returns.
const SchemaID = "https://github.com/rollguard/rollguard/schema.json"

// Schema returns the JSON Schema (draft 2020-12) of rollout.yaml and of a
// policy file, generated from the Go types.
//
// It is one document: $defs.rollout is a rollout.yaml and
// $defs.policy_file a policy file (one policy or a list); the root is
// oneOf the two, so an editor pointed at the document accepts either file
// (they cannot be confused: a spec needs targets, which a policy may not
// have). Checks that need more than the shape (durations' and shares'
// ranges, hosts that exist, files, templates, expressions) are left to
// Load.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{FieldNameTag: "json", Anonymous: true}
	defs := jsonschema.Definitions{}
	// Query is reached only through Queries' own schema: reflect it too.
	for _, v := range []any{&Spec{}, &Query{}} {
		s := r.Reflect(v)
		for name, def := range s.Definitions {
			defs[name] = def
		}
	}
	for typeName, keys := range required {
		if def := defs[typeName]; def != nil && def.Properties != nil {
			def.Required = keys
		}
	}
	for typeKey, values := range enums {
		typeName, key, _ := strings.Cut(typeKey, ".")
		def := defs[typeName]
		if def == nil || def.Properties == nil {
			continue
		}
		prop, ok := def.Properties.Get(key)
		if !ok {
			return nil, fmt.Errorf("schema: enum %s: no such property", typeKey)
		}
		enum := make([]any, len(values))
		for i, v := range values {
			enum[i] = v
		}
		if prop.Type == "array" && prop.Items != nil {
			prop.Items.Enum = enum
		} else {
			prop.Enum = enum
		}
	}
	if spec := defs["Spec"]; spec != nil {
		spec.Description = "rollout.yaml: a rollout of an Ansible change, canary first, with automatic rollback."
	}
	if t := defs["Targets"]; t != nil {
		t.Description = "Exactly one host source: static, inventory, consul or nomad."
		for _, src := range []string{"static", "inventory", "consul", "nomad"} {
			t.OneOf = append(t.OneOf, &jsonschema.Schema{Required: []string{src}})
		}
		t.DependentRequired = map[string][]string{"group": {"inventory"}}
		if prop, ok := t.Properties.Get("static"); ok {
			prop.MinItems = uintPtr(1)
		}
	}
	if s := defs["Snapshot"]; s != nil {
		// A snapshot never restored, or restored without being taken.
		s.DependentRequired = map[string][]string{"create": {"restore"}, "restore": {"create"}}
	}
	if s := defs["Spec"]; s != nil {
		if prop, ok := s.Properties.Get("name"); ok {
			prop.MinLength = uintPtr(1)
		}
	}
	if r := defs["Revert"]; r != nil {
		// What only the revert playbook uses.
		r.DependentRequired = map[string][]string{"extra_vars": {"playbook"}, "forks": {"playbook"}, "vault_password_file": {"playbook"}}
	}
	if p := defs["PolicyRef"]; p != nil {
		p.Description = "A policy file ({file: path}) or an inline policy ({name, rollback_when, host_rollback_when, on_no_data})."
		p.OneOf = []*jsonschema.Schema{
			{Required: []string{"file"}, MaxProperties: uintPtr(1)},
			{
				Required: []string{"name"},
				Not:      &jsonschema.Schema{Required: []string{"file"}},
				AnyOf:    []*jsonschema.Schema{{Required: []string{"rollback_when"}}, {Required: []string{"host_rollback_when"}}},
			},
		}
	}
	if w := defs["Wave"]; w != nil {
		w.Description = "A wave after the canary: a size (optionally spread_by a meta key, with max_per_value and never_whole), or by: a meta key, one wave per value."
		w.Required = nil
		req := func(k string) *jsonschema.Schema { return &jsonschema.Schema{Required: []string{k}} }
		w.OneOf = []*jsonschema.Schema{
			{Required: []string{"size"}, Not: req("by")},
			{Required: []string{"by"}, Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{req("size"), req("spread_by"), req("max_per_value"), req("never_whole")}}},
		}
		w.DependentRequired = map[string][]string{"max_per_value": {"spread_by"}, "never_whole": {"spread_by"}}
		for _, k := range []string{"spread_by", "by"} {
			if prop, ok := w.Properties.Get(k); ok {
				prop.MinLength = uintPtr(1)
			}
		}
		if prop, ok := w.Properties.Get("max_per_value"); ok {
			prop.Minimum = json.Number("1")
		}
	}
	if p := defs["Preflight"]; p != nil {
		if prop, ok := p.Properties.Get("max_changed_tasks"); ok {
			prop.Minimum = json.Number("0")
		}
	}
	if c := defs["Canary"]; c != nil {
		if prop, ok := c.Properties.Get("pin"); ok {
			prop.MinProperties = uintPtr(1)
			prop.Description = "Keeps a count or share of canary hosts inside one value of a meta key: {zone: eu-1a}."
		}
	}
	if a := defs["Alert"]; a != nil {
		// Every alert but a GitHub annotation is sent to a URL.
		a.If = &jsonschema.Schema{Properties: props("type", &jsonschema.Schema{Const: "github"})}
		a.Then = &jsonschema.Schema{Not: &jsonschema.Schema{Required: []string{"url"}}}
		a.Else = &jsonschema.Schema{Required: []string{"url"}}
	}
	// Only the types of rollout.yaml are reflected so far: the policy
	// file's schema below stays strict, as its loader is.
	for _, def := range defs {
		scalarText(def, "", map[*jsonschema.Schema]bool{})
	}
	policy := &jsonschema.Schema{
		Type:        "object",
		Description: "A policy: when to roll back, as expr-lang expressions over hosts, host, fleet, wave, phase and elapsed.",
		Properties: props(
			"name", &jsonschema.Schema{Type: "string", MinLength: uintPtr(1)},
			"rollback_when", &jsonschema.Schema{Type: "string", Description: "Fleet-level condition: reverts per revert.scope."},
			"host_rollback_when", &jsonschema.Schema{Type: "string", Description: "Host-level condition: reverts that host alone."},
			"on_no_data", &jsonschema.Schema{Type: "string", Enum: []any{"fail", "hold", "ignore"}, Default: "fail"},
		),
		AdditionalProperties: jsonschema.FalseSchema,
		Required:             []string{"name"},
		AnyOf:                []*jsonschema.Schema{{Required: []string{"rollback_when"}}, {Required: []string{"host_rollback_when"}}},
	}
	defs["policy"] = policy
	defs["policy_file"] = &jsonschema.Schema{
		Description: "A policy file: one policy or a list of them.",
		OneOf: []*jsonschema.Schema{
			{Ref: "#/$defs/policy"},
			{Type: "array", Items: &jsonschema.Schema{Ref: "#/$defs/policy"}, MinItems: uintPtr(1)},
		},
	}
	defs["rollout"] = &jsonschema.Schema{Ref: "#/$defs/Spec"}
	doc := &jsonschema.Schema{
		Version:     jsonschema.Version,
		ID:          SchemaID,
		Title:       "rollguard rollout.yaml and policy files",
		Description: "$defs.rollout validates rollout.yaml, $defs.policy_file a policy file.",
		OneOf:       []*jsonschema.Schema{{Ref: "#/$defs/rollout"}, {Ref: "#/$defs/policy_file"}},
		Definitions: defs,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return append(out, '\n'), nil
}

func uintPtr(n uint64) *uint64 { return &n }

// scalarText makes every plain text value of rollout.yaml accept a number
// or a boolean too, as Load does: it reads any scalar where it wants text
// as the text written, so `version: 42`, `name: 2024` and a
// `version: ${BUILD_NUMBER}` that expands to digits are valid. A value
// with a form (an enum, a duration's or a share's pattern) keeps it, and
// so does a URL, which no number is. key is the property s describes.
func scalarText(s *jsonschema.Schema, key string, seen map[*jsonschema.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if s.Type == "string" && s.Enum == nil && s.Const == nil && s.Pattern == "" && s.Format == "" && key != "url" && key != "push_url" {
		s.Type = ""
		if s.Extras == nil {
			s.Extras = map[string]any{}
		}
		s.Extras["type"] = []string{"string", "number", "boolean"}
	}
	if s.Properties != nil {
		for pair := s.Properties.Oldest(); pair != nil; pair = pair.Next() {
			scalarText(pair.Value, pair.Key, seen)
		}
	}
	for _, sub := range slices.Concat(s.AllOf, s.AnyOf, s.OneOf, s.PrefixItems) {
		scalarText(sub, key, seen)
	}
	for _, sub := range []*jsonschema.Schema{s.Items, s.AdditionalProperties} {
		scalarText(sub, "", seen)
	}
}

// props builds ordered properties from name, schema pairs.
func props(kv ...any) *orderedmap.OrderedMap[string, *jsonschema.Schema] {
	m := orderedmap.New[string, *jsonschema.Schema]()
	for i := 0; i+1 < len(kv); i += 2 {
		m.Set(kv[i].(string), kv[i+1].(*jsonschema.Schema))
	}
	return m
}

// durationPattern matches a non-negative Go duration ("90s", "1h30m", "0").
const durationPattern = `^(0|([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`

// sharePattern matches a share of hosts ("10%", "12.5%").
const sharePattern = `^[0-9]+(\.[0-9]+)?%$`

// JSONSchema describes a Duration: a Go duration string.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     durationPattern,
		Description: `A Go duration: "90s", "5m", "1h30m".`,
		Examples:    []any{"90s", "5m"},
	}
}

// JSONSchema describes a Size: a host count or a share.
func (Size) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: `A number of hosts (3) or a share of them ("10%", over 0 and at most 100).`,
		OneOf:       sizeForms(),
	}
}

// JSONSchema describes a Tolerance: a host count from 0, or a share.
func (Tolerance) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: `How many hosts of a wave after the canary may fail to apply: a number (0 or more) or a share of the wave ("10%"). Default 0.`,
		OneOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: json.Number("0")},
			{Type: "string", Pattern: sharePattern},
		},
	}
}

func sizeForms() []*jsonschema.Schema {
	return []*jsonschema.Schema{
		{Type: "integer", Minimum: json.Number("1")},
		{Type: "string", Pattern: sharePattern},
	}
}

// JSONSchema describes a Share: "N%" or a number in [0, 1].
func (Share) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: `A share: "10%" (0 to 100) or a number from 0 to 1 (0.1).`,
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: sharePattern},
			{Type: "number", Minimum: json.Number("0"), Maximum: json.Number("1")},
		},
	}
}

// MarshalJSON writes a Share as "N%".
func (s Share) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatFloat(100*float64(s), 'f', -1, 64) + "%")
}

// JSONSchema describes a HostSelector's five forms.
func (HostSelector) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: `The canary: a count (1), a share ("10%"), a list of host names, {tag: t} or {meta: {k: v}}. Default 1.`,
		OneOf: append(sizeForms(),
			&jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Type: "string", MinLength: uintPtr(1)}, MinItems: uintPtr(1)},
			&jsonschema.Schema{
				Type:                 "object",
				Properties:           props("tag", &jsonschema.Schema{Type: "string", MinLength: uintPtr(1)}),
				Required:             []string{"tag"},
				AdditionalProperties: jsonschema.FalseSchema,
			},
			&jsonschema.Schema{
				Type:                 "object",
				Properties:           props("meta", &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}, MinProperties: uintPtr(1)}),
				Required:             []string{"meta"},
				AdditionalProperties: jsonschema.FalseSchema,
			},
		),
	}
}

// JSONSchema describes Queries: a mapping of query names to queries, in
// the order written.
// JSONSchema describes preflight.check.
func (CheckScope) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: "Which hosts the pre-flight check (check mode, --diff) covers: true (the canary), canary, all, or false (none).",
		OneOf:       []*jsonschema.Schema{{Type: "boolean"}, {Type: "string", Enum: []any{string(CheckCanary), string(CheckAll)}}},
	}
}

func (Queries) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:                 "object",
		Description:          "Queries by name; the name is the metric's name in policies (host.metrics.<name>) and in recorded metrics.",
		PropertyNames:        &jsonschema.Schema{Pattern: `^[A-Za-z_][A-Za-z0-9_]*$`},
		AdditionalProperties: &jsonschema.Schema{Ref: "#/$defs/Query"},
		MinProperties:        uintPtr(1),
	}
}

// JSONSchema describes a Target: a host name or an object.
func (Target) JSONSchema() *jsonschema.Schema {
	obj := &jsonschema.Schema{
		Type: "object",
		Properties: props(
			"name", &jsonschema.Schema{Type: "string", MinLength: uintPtr(1)},
			"address", &jsonschema.Schema{Type: "string", Description: "How to reach the host (ansible_host); default: name."},
			"port", &jsonschema.Schema{Type: "integer", Minimum: json.Number("1"), Maximum: json.Number("65535")},
			"vars", &jsonschema.Schema{Type: "object", Description: "Ansible host variables."},
			"tags", &jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Type: "string"}},
			"meta", &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}},
		),
		Required:             required[reflect.TypeOf(Target{}).Name()],
		AdditionalProperties: jsonschema.FalseSchema,
	}
	return &jsonschema.Schema{
		Description: "A host: its name, or {name, address, port, vars, tags, meta}.",
		OneOf:       []*jsonschema.Schema{{Type: "string", MinLength: uintPtr(1)}, obj},
	}
}

// MarshalJSON writes a Duration as its schema says: a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// String is the size as written: "3" or "10%".
func (s Size) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.Count)
}

// MarshalJSON writes a Size as its schema says: a count or "N%".
func (s Size) MarshalJSON() ([]byte, error) {
	if s.Percent > 0 {
		return json.Marshal(s.String())
	}
	return json.Marshal(s.Count)
}

// MarshalJSON writes a HostSelector in the form it was written.
func (h HostSelector) MarshalJSON() ([]byte, error) {
	switch {
	case h.Size != nil:
		return json.Marshal(*h.Size)
	case len(h.Names) > 0:
		return json.Marshal(h.Names)
	case h.Tag != "":
		return json.Marshal(map[string]string{"tag": h.Tag})
	case len(h.Meta) > 0:
		return json.Marshal(map[string]map[string]string{"meta": h.Meta})
	}
	return []byte("null"), nil
}

// MarshalJSON writes Queries as the mapping they were written as, in
// order.
func (q Queries) MarshalJSON() ([]byte, error) {
	var b []byte
	b = append(b, '{')
	for i, x := range q {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(x.Name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", x.Name, err)
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}
