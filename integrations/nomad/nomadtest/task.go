package nomadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/hashicorp/go-envparse"
	"github.com/hashicorp/nomad/api"
)

// What a Nomad client does with a task before it starts it, done locally:
// render its templates into a task directory the way Nomad's template
// runner (consul-template) does, and build its environment and command
// line. The nomadVar items have consul-template's shape (a map of items
// whose String is the value and whose JSON is the quoted value), templates
// use their own delimiters and missingkey=error when error_on_missing_key
// is set, and env = true files are parsed with Nomad's own parser,
// go-envparse.

// varItem is consul-template's NomadVarItem.
type varItem struct {
	Key, Value string
}

func (v varItem) String() string { return v.Value }

// MarshalJSON is consul-template's: the value, quoted.
func (v varItem) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf("%q", v.Value)), nil }

// varItems is consul-template's NomadVarItems.
type varItems map[string]varItem

// Dirs are a task's directories on the machine that plays the client.
type Dirs struct {
	// Task is the task directory (local/, secrets/ are below it);
	// Alloc the allocation's shared directory.
	Task, Alloc string
	// Node is the node's name (${node.unique.name}).
	Node string
}

// interpolate replaces the runtime variables a job may use in env and
// args.
func (d Dirs) interpolate(s string) string {
	return strings.NewReplacer(
		"${NOMAD_TASK_DIR}", filepath.Join(d.Task, "local"),
		"${NOMAD_SECRETS_DIR}", filepath.Join(d.Task, "secrets"),
		"${NOMAD_ALLOC_DIR}", d.Alloc,
		"${node.unique.name}", d.Node,
	).Replace(s)
}

// RenderTemplate renders one template block with vars (variable path ->
// items), as the client would.
func RenderTemplate(t *api.Template, vars map[string]map[string]string) (string, error) {
	left, right := "{{", "}}"
	if t.LeftDelim != nil && *t.LeftDelim != "" {
		left = *t.LeftDelim
	}
	if t.RightDelim != nil && *t.RightDelim != "" {
		right = *t.RightDelim
	}
	funcs := template.FuncMap{
		"nomadVar": func(path string) (varItems, error) {
			items, ok := vars[path]
			if !ok {
				return nil, fmt.Errorf("nomad variable %q does not exist: the template would wait for it", path)
			}
			out := varItems{}
			for k, v := range items {
				out[k] = varItem{Key: k, Value: v}
			}
			return out, nil
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(bytes.TrimSpace(b)), err
		},
	}
	tmpl := template.New(deref(t.DestPath)).Delims(left, right).Funcs(funcs)
	if t.ErrMissingKey != nil && *t.ErrMissingKey {
		tmpl = tmpl.Option("missingkey=error")
	}
	tmpl, err := tmpl.Parse(deref(t.EmbeddedTmpl))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Prepare renders every template of task into d.Task (with its perms) and
// returns the task's environment: its env block and what its env = true
// templates hold, interpolated.
func Prepare(task *api.Task, vars map[string]map[string]string, d Dirs) ([]string, error) {
	env := map[string]string{}
	for k, v := range task.Env {
		env[k] = d.interpolate(v)
	}
	for _, t := range task.Templates {
		out, err := RenderTemplate(t, vars)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", deref(t.DestPath), err)
		}
		dest := filepath.Join(d.Task, filepath.FromSlash(deref(t.DestPath)))
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return nil, err
		}
		perm := os.FileMode(0o644)
		if t.Perms != nil && *t.Perms != "" {
			p, err := strconv.ParseUint(*t.Perms, 8, 32)
			if err != nil {
				return nil, fmt.Errorf("template %s: perms %q: %w", dest, *t.Perms, err)
			}
			perm = os.FileMode(p)
		}
		if err := os.WriteFile(dest, []byte(out), perm); err != nil {
			return nil, err
		}
		if err := os.Chmod(dest, perm); err != nil {
			return nil, err
		}
		if t.Envvars != nil && *t.Envvars {
			parsed, err := envparse.Parse(strings.NewReader(out))
			if err != nil {
				return nil, fmt.Errorf("template %s: env file: %w", dest, err)
			}
			for k, v := range parsed {
				env[k] = v
			}
		}
	}
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out, nil
}

// Args returns the task's arguments (config.args), interpolated.
func Args(task *api.Task, d Dirs) []string {
	raw, _ := task.Config["args"].([]any)
	var out []string
	for _, a := range raw {
		out = append(out, d.interpolate(fmt.Sprint(a)))
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
