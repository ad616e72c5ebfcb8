package bundle

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// What Ansible reads next to a playbook without being told: variables,
// and the directories its modules and plugins look in.
var playbookDirs = []string{
	"group_vars", "host_vars", "templates", "files", "vars", "tasks", "handlers",
	"library", "module_utils", "filter_plugins", "lookup_plugins", "action_plugins",
	"callback_plugins", "test_plugins", "collections",
}

// Galaxy requirements files, next to a playbook, in the order Ansible's
// own tooling (AWX, ansible-navigator) looks for them.
var requirementsFiles = []string{"collections/requirements.yml", "collections/requirements.yaml", "requirements.yml", "requirements.yaml"}

// keyVars are the variables that name an SSH private key.
var keyVars = []string{"ansible_ssh_private_key_file", "ansible_private_key_file"}

// keyVarLine finds them in an inventory or vars file, INI or YAML.
var keyVarLine = regexp.MustCompile(`(?m)\bansible_(?:ssh_)?private_key_file\s*[=:]\s*["']?([^"'\s#,}]+)`)

// clearPassword finds a password written in clear in an inventory or vars
// file (not vault-encrypted): it would travel with the bundle.
var clearPassword = regexp.MustCompile(`(?m)\bansible_(?:ssh_|become_)?pass(?:word)?\s*[=:]\s*["']?[^\s"'{!]`)

// playbook adds a playbook and follows what it references.
func (r *resolver) playbook(p, why string) {
	r.need(p, why)
	dir := filepath.Dir(p)
	for _, d := range playbookDirs {
		if isDir(filepath.Join(dir, d)) {
			r.walk(filepath.Join(dir, d), d+"/ next to "+r.display(p))
		}
	}
	for _, name := range requirementsFiles {
		if req := filepath.Join(dir, name); isFile(req) {
			r.need(req, "galaxy requirements")
		}
	}
	if r.requirements == "" {
		r.requirements = Requirements(p)
	}
	if isFile(filepath.Join(dir, "ansible.cfg")) {
		r.ansibleCfg(filepath.Join(dir, "ansible.cfg"))
	}
	plays := r.yamlList(p)
	for _, play := range plays {
		m, ok := play.(map[string]any)
		if !ok {
			continue
		}
		for _, k := range []string{"import_playbook", "ansible.builtin.import_playbook", "include"} {
			if s, ok := m[k].(string); ok {
				if r.templated(s, p, k) {
					continue
				}
				r.playbook(join(dir, s), "imported by "+r.display(p))
			}
		}
		for _, f := range strings2(m["vars_files"]) {
			if !r.templated(f, p, "vars_files") {
				r.need(join(dir, f), "vars_files of "+r.display(p))
			}
		}
		for _, role := range roleNames(m["roles"]) {
			r.role(role, dir, p)
		}
		for _, k := range []string{"pre_tasks", "tasks", "post_tasks", "handlers"} {
			r.tasks(m[k], dir, dir, p)
		}
	}
}

// tasks follows the includes of a task list: task files, vars files and
// roles. base is where relative task files are looked up; pbDir is the
// playbook's directory, where roles are.
func (r *resolver) tasks(list any, base, pbDir, from string) {
	items, _ := list.([]any)
	for _, t := range items {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		for _, k := range []string{"block", "rescue", "always"} {
			r.tasks(m[k], base, pbDir, from)
		}
		for k, v := range m {
			switch strings.TrimPrefix(k, "ansible.builtin.") {
			case "include_tasks", "import_tasks", "include":
				f := fileArg(v)
				if f == "" || r.templated(f, from, k) {
					continue
				}
				p := join(base, f)
				if !isFile(p) && isFile(join(pbDir, f)) {
					p = join(pbDir, f)
				}
				r.need(p, "included by "+r.display(from))
				r.tasks(r.yamlList(p), filepath.Dir(p), pbDir, p)
			case "include_vars":
				if f := fileArg(v); f != "" && !r.templated(f, from, k) {
					p := join(base, f)
					if !isFile(p) && !isDir(p) {
						p = join(join(base, "vars"), f)
					}
					if isDir(p) {
						r.walk(p, "include_vars of "+r.display(from))
					} else {
						r.need(p, "include_vars of "+r.display(from))
					}
				}
			case "include_role", "import_role":
				if a, ok := v.(map[string]any); ok {
					if name, ok := a["name"].(string); ok {
						r.role(name, pbDir, from)
					}
				}
			}
		}
	}
}

// role adds a role by name: from the playbook's roles/, the roles_path
// of ansible.cfg, or next to the playbook; a collection's role
// (namespace.collection.role) comes from the collection.
func (r *resolver) role(name, pbDir, from string) {
	if r.templated(name, from, "role") || strings.Count(name, ".") >= 2 {
		return
	}
	candidates := []string{filepath.Join(pbDir, "roles", name)}
	if r.cfg != nil {
		for _, rp := range r.cfg.rolesPath {
			candidates = append(candidates, filepath.Join(rp, name))
		}
	}
	candidates = append(candidates, join(pbDir, name))
	for _, dir := range candidates {
		if !isDir(dir) {
			continue
		}
		if r.roles[dir] {
			return
		}
		r.roles[dir] = true
		r.walk(dir, "role "+name)
		meta := r.yamlMap(firstFile(filepath.Join(dir, "meta", "main.yml"), filepath.Join(dir, "meta", "main.yaml")))
		for _, dep := range roleNames(meta["dependencies"]) {
			r.role(dep, pbDir, dir)
		}
		for _, sub := range []string{"tasks", "handlers"} {
			if f := firstFile(filepath.Join(dir, sub, "main.yml"), filepath.Join(dir, sub, "main.yaml")); f != "" {
				r.tasks(r.yamlList(f), filepath.Dir(f), pbDir, f)
			}
		}
		return
	}
	r.notef("role %s (%s) is not next to the playbook nor in roles_path: it must be installed where the job runs", name, r.display(from))
}

// inventory adds an inventory file or directory, the group_vars and
// host_vars next to it, and the keys they name.
func (r *resolver) inventory(p, why string) {
	switch {
	case isDir(p):
		r.walk(p, why)
	case isFile(p):
		r.need(p, why)
		for _, d := range []string{"group_vars", "host_vars"} {
			if dir := filepath.Join(filepath.Dir(p), d); isDir(dir) {
				r.walk(dir, d+"/ next to the inventory")
			}
		}
	default:
		// A host list ("web-1,web-2,") or a missing file: the spec's
		// loader reports a missing one.
		return
	}
	r.inventories = append(r.inventories, p)
}

// scanAllVars looks for SSH keys and clear passwords in the inventories
// and every group_vars and host_vars file of the bundle.
func (r *resolver) scanAllVars() {
	for _, abs := range slices.Sorted(maps.Keys(r.files)) {
		f, ok := r.files[abs]
		if !ok {
			continue
		}
		vars := slices.Contains(r.inventories, abs)
		for _, inv := range r.inventories {
			vars = vars || strings.HasPrefix(abs, inv+string(filepath.Separator))
		}
		for _, d := range []string{"group_vars", "host_vars"} {
			vars = vars || strings.Contains(filepath.ToSlash(abs), "/"+d+"/")
		}
		if vars {
			r.scanVars(abs, f.Data)
		}
	}
}

// scanVars records the SSH keys a vars or inventory file names, and notes
// a password written in clear.
func (r *resolver) scanVars(file string, data []byte) {
	if bytes.HasPrefix(data, []byte("$ANSIBLE_VAULT;")) {
		return
	}
	for _, m := range keyVarLine.FindAllSubmatch(data, -1) {
		r.keyFile(string(m[1]), r.src.Dir, r.display(file))
	}
	if clearPassword.Match(data) {
		r.notef("%s holds a password in clear text, and the bundle carries it: encrypt it with ansible-vault", r.display(file))
	}
}

// keyFile records an SSH private key named by why; a relative path is
// relative to base (ansible-playbook's working directory, or the
// ansible.cfg that names it).
func (r *resolver) keyFile(p, base, why string) {
	switch {
	case r.templated(p, why, "private key file"):
	case strings.HasPrefix(p, "~"):
		r.notef("%s names the SSH key %s in a home directory: the bundle cannot place it; put the key next to the spec, named by a relative path", why, p)
	case filepath.IsAbs(p):
		r.notef("%s names the SSH key %s by an absolute path: it must exist where the job runs", why, p)
	default:
		r.secret(join(base, p), why)
	}
}

// templated notes a reference whose path is a Jinja expression: it cannot
// be resolved before the run.
func (r *resolver) templated(s, from, what string) bool {
	if !strings.Contains(s, "{{") {
		return false
	}
	r.notef("%s: %s %q is templated and was not followed: what it names travels only if it is in a directory the bundle takes", r.display(from), what, s)
	return true
}

// ansibleCfg is what rollguard needs from ansible.cfg's [defaults].
type ansibleCfg struct {
	rolesPath []string
}

// cfgPaths are the [defaults] keys whose values are files or directories
// to carry; cfgLists hold several, separated by ':' (or ',' for inventory).
var cfgPaths = map[string]string{
	"inventory": ",", "roles_path": ":", "library": ":", "module_utils": ":", "filter_plugins": ":",
	"lookup_plugins": ":", "action_plugins": ":", "callback_plugins": ":", "test_plugins": ":",
	"collections_path": ":", "collections_paths": ":",
}

// ansibleCfg adds an ansible.cfg and what its [defaults] name. Relative
// paths there are relative to the file, as Ansible reads them.
func (r *resolver) ansibleCfg(p string) {
	if !isFile(p) {
		return
	}
	if _, ok := r.files[p]; ok {
		return
	}
	r.need(p, "ansible.cfg")
	f, ok := r.files[p]
	if !ok {
		return
	}
	dir := filepath.Dir(p)
	if r.cfg == nil {
		r.cfg = &ansibleCfg{}
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(f.Data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section != "defaults" {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		where := fmt.Sprintf("%s:%d %s", r.display(p), n, key)
		switch key {
		case "vault_password_file", "private_key_file":
			if key == "private_key_file" {
				r.keyFile(value, dir, where)
				continue
			}
			switch {
			case strings.HasPrefix(value, "~") || filepath.IsAbs(value):
				r.notef("%s = %s is outside the bundle: it must exist where the job runs", where, value)
			default:
				r.secret(join(dir, value), where)
			}
			continue
		}
		sep, ok := cfgPaths[key]
		if !ok {
			continue
		}
		for _, v := range strings.Split(value, sep) {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if strings.HasPrefix(v, "~") || filepath.IsAbs(v) {
				r.notef("%s = %s is outside the bundle: it must exist where the job runs", where, v)
				continue
			}
			abs := join(dir, v)
			switch key {
			case "inventory":
				r.inventory(abs, where)
			case "roles_path":
				r.cfg.rolesPath = append(r.cfg.rolesPath, abs)
			default:
				if isDir(abs) {
					r.walk(abs, where)
				}
			}
		}
	}
}

// yamlList parses a playbook or task file: a list of maps. A file that is
// not YAML is an error (ansible-playbook would refuse it too).
func (r *resolver) yamlList(p string) []any {
	if p == "" || r.parsed[p] {
		return nil
	}
	r.parsed[p] = true
	f, ok := r.files[p]
	if !ok {
		return nil
	}
	var out []any
	if err := yaml.Unmarshal(f.Data, &out); err != nil {
		r.errorf("%s: not a playbook or task list: %v", r.display(p), err)
	}
	return out
}

func (r *resolver) yamlMap(p string) map[string]any {
	if p == "" {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var out map[string]any
	if err := yaml.Unmarshal(data, &out); err != nil {
		r.errorf("%s: %v", r.display(p), err)
	}
	return out
}

// Requirements returns the galaxy requirements file next to playbook that
// lists collections (collections/requirements.yml, then requirements.yml),
// or "".
func Requirements(playbook string) string {
	for _, name := range requirementsFiles {
		if req := filepath.Join(filepath.Dir(playbook), name); isFile(req) && listsCollections(req) {
			return req
		}
	}
	return ""
}

// listsCollections says whether a requirements file has a collections list.
func listsCollections(p string) bool {
	data, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	var req struct {
		Collections []any `yaml:"collections"`
	}
	return yaml.Unmarshal(data, &req) == nil && len(req.Collections) > 0
}

// roleNames reads a roles list: names, or maps with role or name.
func roleNames(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case map[string]any:
			for _, k := range []string{"role", "name"} {
				if s, ok := e[k].(string); ok {
					out = append(out, s)
					break
				}
			}
		}
	}
	return out
}

// strings2 reads a string or a list of strings (or of lists: vars_files'
// first-found alternatives).
func strings2(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, strings2(e)...)
		}
		return out
	}
	return nil
}

// fileArg is an include's file: the free-form string or its file key.
func fileArg(v any) string {
	switch v := v.(type) {
	case string:
		if strings.Contains(v, "{{") {
			return v
		}
		f, _, _ := strings.Cut(v, " ")
		return f
	case map[string]any:
		for _, k := range []string{"file", "dir", "_raw_params"} {
			if s, ok := v[k].(string); ok {
				return s
			}
		}
	}
	return ""
}

func join(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func firstFile(paths ...string) string {
	for _, p := range paths {
		if isFile(p) {
			return p
		}
	}
	return ""
}
