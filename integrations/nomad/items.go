package nomad

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// EnvRef is one ${NAME} of a spec, as the variable's items need it.
type EnvRef struct {
	Name string
	// Where says where it is written ("rollout.yaml:10:17 metrics.bearer_token").
	Where string
	// HasDefault is set for ${NAME:-default}.
	HasDefault bool
}

// SecretFile is a secret file the run expects: its content is an item of
// the variable, written at Path (relative to the task's local/).
type SecretFile struct {
	Item, Path, Why string
}

// Needs is what a rollout reads from its environment and its secret
// files, from which Items derives the variable's items.
type Needs struct {
	// Env are the spec's ${NAME} references, in file order.
	Env []EnvRef
	// Consul and Nomad say that the run calls those APIs (targets or
	// state there), and why: it then needs CONSUL_HTTP_TOKEN or
	// NOMAD_TOKEN (the latter only without workload identity).
	Consul, Nomad string
	// Files are the secret files.
	Files []SecretFile
	// Extra are more environment variables to read (--secret).
	Extra []string
}

// runtimeEnv are variables Nomad sets in every task: the variable must
// not override them, and a spec that reads them needs nothing more.
var runtimeEnv = []string{
	"NOMAD_ALLOC_DIR", "NOMAD_TASK_DIR", "NOMAD_SECRETS_DIR", "NOMAD_ALLOC_ID", "NOMAD_SHORT_ALLOC_ID",
	"NOMAD_ALLOC_NAME", "NOMAD_ALLOC_INDEX", "NOMAD_JOB_ID", "NOMAD_JOB_NAME", "NOMAD_JOB_PARENT_ID",
	"NOMAD_GROUP_NAME", "NOMAD_TASK_NAME", "NOMAD_DC", "NOMAD_REGION", "NOMAD_NAMESPACE",
	"NOMAD_CPU_LIMIT", "NOMAD_CPU_CORES", "NOMAD_MEMORY_LIMIT", "NOMAD_MEMORY_MAX_LIMIT", NodeNameEnv,
}

// Items returns the variable's items for n: one per environment variable
// (optional when every reference has a default), the API tokens the run
// needs, and one per secret file. Names set by Nomad at run time or given
// in plainEnv (stored in the job) are not items.
func Items(n Needs, identity bool, plainEnv map[string]string) []Item {
	var items []Item
	index := map[string]int{}
	add := func(it Item) {
		if slices.Contains(runtimeEnv, it.Name) {
			return
		}
		if _, ok := plainEnv[it.Name]; ok && it.File == "" {
			return
		}
		if i, ok := index[it.Name]; ok {
			items[i].Optional = items[i].Optional && it.Optional
			if !strings.Contains(items[i].Why, it.Why) {
				items[i].Why += "; " + it.Why
			}
			return
		}
		index[it.Name] = len(items)
		items = append(items, it)
	}
	for _, r := range n.Env {
		add(Item{Name: r.Name, Optional: r.HasDefault, Why: r.Where})
	}
	if n.Consul != "" {
		add(Item{Name: "CONSUL_HTTP_TOKEN", Why: n.Consul})
	}
	if n.Nomad != "" && !identity {
		add(Item{Name: "NOMAD_TOKEN", Why: n.Nomad})
	}
	for _, name := range n.Extra {
		add(Item{Name: name, Why: "--secret"})
	}
	for _, f := range n.Files {
		add(Item{Name: f.Item, File: "local/" + f.Path, Why: f.Why})
	}
	return items
}

// FormatItems lists the items for a person, with the command that puts
// them (file items read from the files beside the spec, with @).
func FormatItems(path string, items []Item, localPath func(string) string) string {
	if len(items) == 0 {
		return fmt.Sprintf("the variable %s needs no items\n", path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the variable %s must hold:\n", path)
	width := 0
	for _, it := range items {
		width = max(width, len(it.Name))
	}
	var put []string
	for _, it := range items {
		kind := "environment"
		switch {
		case it.File != "":
			kind = "file " + it.File
			put = append(put, it.Name+"=@"+localPath(strings.TrimPrefix(it.File, "local/")))
		case it.Optional:
			kind = "environment, optional (has a default)"
		default:
			put = append(put, it.Name+"=...")
		}
		fmt.Fprintf(&b, "  %-*s  %s  (%s)\n", width, it.Name, kind, it.Why)
	}
	fmt.Fprintf(&b, "put them with:\n  nomad var put %s %s\n", path, strings.Join(put, " "))
	return b.String()
}

// VarCheck is what the job's variable holds, as far as the token can see.
type VarCheck struct {
	// Path is the variable's path.
	Path string
	// Readable is false when the token may not read it (403): nothing
	// could be checked.
	Readable bool
	// Exists is false when there is no such variable.
	Exists bool
	// Missing are the required items it lacks.
	Missing []string
}

// CheckVariable reads the variable at path (in namespace, "" for the
// client's) and says which of the required items it lacks, without
// reading any value into the result. A 403 is not an error: the token
// cannot read the variable, so VarCheck.Readable is false. Cancelling ctx
// aborts the request.
func CheckVariable(ctx context.Context, c *Client, path, namespace string, required []string) (VarCheck, error) {
	check := VarCheck{Path: path}
	v, _, err := c.api.Variables().Peek(path, query(ctx, &api.QueryOptions{Namespace: namespace}))
	if err != nil {
		var ue api.UnexpectedResponseError
		if errors.As(err, &ue) && ue.StatusCode() == http.StatusForbidden {
			return check, nil
		}
		return check, fmt.Errorf("nomad variable %q: read: %w", path, err)
	}
	check.Readable = true
	check.Exists = v != nil
	for _, name := range required {
		if v == nil {
			check.Missing = append(check.Missing, name)
			continue
		}
		if _, ok := v.Items[name]; !ok {
			check.Missing = append(check.Missing, name)
		}
	}
	return check, nil
}
