// Package bundle resolves the files one rollout needs from its spec, so
// that they can travel with it (a Nomad job embeds them): the spec, its
// policy files, the playbooks and what they reference (imported playbooks,
// roles and their dependencies, task and vars files, the directories
// Ansible reads next to a playbook), the inventory with its group_vars and
// host_vars, ansible.cfg and a galaxy requirements file.
//
// A bundle never holds hidden files, .git, state directories, private
// keys, vault password files or a rendered job: a secret file the rollout
// references (apply.vault_password_file, an SSH private key named in
// ansible.cfg, the inventory or a host's vars) is listed in Secrets, by
// path, and never read, so that it can come from somewhere safer. A file
// too large or not text is refused, naming the limit.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a bundle. A Nomad job carries its files in template blocks,
// stored with the job in the servers' Raft log and sent to every client
// that runs it: a larger tree belongs in an artifact.
const (
	// MaxFileSize is the largest file a bundle takes (256 KiB).
	MaxFileSize = 256 << 10
	// MaxTotalSize is the most a bundle holds in all (1 MiB).
	MaxTotalSize = 1 << 20
)

// Sources are what the spec names, with paths resolved (absolute).
type Sources struct {
	// Spec is the spec file; Dir its directory, where ansible-playbook
	// runs and reads ansible.cfg.
	Spec string
	Dir  string
	// PolicyFiles are the policy files the spec names.
	PolicyFiles []string
	// ApplyPlaybook and RevertPlaybook are apply.playbook and
	// revert.playbook (when set).
	ApplyPlaybook, RevertPlaybook string
	// Inventory is targets.inventory (when set).
	Inventory string
	// VaultPasswordFile is apply.vault_password_file (when set).
	VaultPasswordFile string
	// StateDir is the local state directory (state.dir), never bundled.
	StateDir string
	// HostVars are the static targets' vars, which may name an SSH key.
	HostVars []map[string]any
}

// File is one file of the bundle.
type File struct {
	// Path is where the file sits relative to Bundle.Root, with slashes.
	Path string
	// Data is its content.
	Data []byte
	// Why says what needs it ("spec", "apply.playbook", "role nginx").
	Why string
}

// Secret is a secret file the rollout references: it is not in the
// bundle and was not read.
type Secret struct {
	// Path is where the run expects it, relative to Bundle.Root.
	Path string
	// Item is a name for it, usable as a Nomad variable item and a
	// template field: "file_" and the path's letters and digits.
	Item string
	// Why says what references it ("apply.vault_password_file",
	// "ansible.cfg private_key_file").
	Why string
}

// Skipped is a file met in a directory of the bundle and left out.
type Skipped struct {
	Path   string
	Reason string
}

// Bundle is the resolved file set of one rollout.
type Bundle struct {
	// Root is the directory every Path is relative to: the spec's
	// directory, or the closest directory holding it and every file
	// outside it (an inventory in ../inventories).
	Root string
	// Spec is the spec's Path.
	Spec  string
	Files []File
	// Secrets are referenced secret files, by Path.
	Secrets []Secret
	// Skipped lists what was left out: of the directories the bundle
	// walked, and of the spec's directory (a directory ends in /).
	Skipped []Skipped
	// Requirements is the Path of a galaxy requirements file that lists
	// collections ("" when there is none).
	Requirements string
	// Notes say what the bundle could not carry or resolve, for a person
	// to check (a templated path, an absolute inventory path).
	Notes []string
}

// Size is the total size of the bundle's files.
func (b *Bundle) Total() int {
	n := 0
	for _, f := range b.Files {
		n += len(f.Data)
	}
	return n
}

// resolver collects one bundle. Paths are absolute until the end.
type resolver struct {
	src     Sources
	files   map[string]*File
	secrets map[string]*Secret
	skipped map[string]string
	notes   []string
	errs    []error
	// parsed remembers the YAML files already followed (playbooks, task
	// files, role metadata) and the roles already added.
	parsed map[string]bool
	roles  map[string]bool
	// cfg is what ansible.cfg says, when there is one.
	cfg          *ansibleCfg
	requirements string
	// inventories are the inventory files and directories added.
	inventories []string
}

// Resolve collects the bundle of src. Every problem is reported at once;
// the bundle is returned only when there is none.
func Resolve(src Sources) (*Bundle, error) {
	r := &resolver{src: src, files: map[string]*File{}, secrets: map[string]*Secret{}, skipped: map[string]string{},
		parsed: map[string]bool{}, roles: map[string]bool{}}
	if src.StateDir == "" {
		r.src.StateDir = filepath.Join(src.Dir, ".rollguard")
	}
	r.need(src.Spec, "spec")
	for _, p := range src.PolicyFiles {
		r.need(p, "policy file")
	}
	if src.VaultPasswordFile != "" {
		r.secret(src.VaultPasswordFile, "apply.vault_password_file")
	}
	if src.Inventory != "" {
		r.inventory(src.Inventory, "targets.inventory")
	}
	r.ansibleCfg(filepath.Join(src.Dir, "ansible.cfg"))
	for i, vars := range src.HostVars {
		for _, k := range keyVars {
			if p, ok := vars[k].(string); ok && p != "" {
				r.keyFile(p, src.Dir, fmt.Sprintf("targets.static[%d].vars.%s", i, k))
			}
		}
	}
	r.playbook(src.ApplyPlaybook, "apply.playbook")
	if src.RevertPlaybook != "" {
		r.playbook(src.RevertPlaybook, "revert.playbook")
	}
	r.scanAllVars()
	r.survey()
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return r.bundle()
}

// survey lists what the spec's directory holds besides the bundle, so
// that a person sees what stays behind and why.
func (r *resolver) survey() {
	entries, err := os.ReadDir(r.src.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(r.src.Dir, e.Name())
		if _, ok := r.files[p]; ok {
			continue
		}
		if _, ok := r.secrets[p]; ok {
			continue
		}
		taken := false
		for f := range r.files {
			taken = taken || strings.HasPrefix(f, p+string(filepath.Separator))
		}
		for f := range r.secrets {
			taken = taken || strings.HasPrefix(f, p+string(filepath.Separator))
		}
		if taken {
			continue
		}
		reason := "not referenced by the rollout"
		switch {
		case r.isState(p):
			reason = "rollguard's state directory"
		case strings.HasPrefix(e.Name(), "."):
			reason = "hidden"
		case !e.IsDir():
			if _, why, _ := r.read(p); why == reasonKey || why == reasonJob {
				reason = why
			} else if nameLooksSecret(e.Name()) {
				reason = "named like a vault password file or a private key"
			}
		}
		if e.IsDir() {
			p += string(filepath.Separator)
		}
		r.skip(p, reason)
	}
}

// display is p relative to the spec's directory, for messages.
func (r *resolver) display(p string) string {
	if rel, err := filepath.Rel(r.src.Dir, p); err == nil {
		return filepath.ToSlash(rel)
	}
	return p
}

func (r *resolver) errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}

func (r *resolver) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// need adds a file the rollout references by name: a file that must not
// travel is an error, not a skip.
func (r *resolver) need(p, why string) {
	if _, ok := r.files[p]; ok {
		return
	}
	if s, ok := r.secrets[p]; ok {
		r.errorf("%s is needed as a %s, but it is the secret file of %s: secret files never go into the bundle", r.display(p), why, s.Why)
		return
	}
	if strings.HasPrefix(filepath.Base(p), ".") || r.isState(p) {
		r.errorf("%s (%s) cannot be embedded: hidden files and rollguard's state never go into the bundle", r.display(p), why)
		return
	}
	data, reason, err := r.read(p)
	switch {
	case err != nil:
		r.errorf("%s (%s): %w", r.display(p), why, err)
	case reason != "":
		r.errorf("%s (%s) cannot be embedded: it is %s", r.display(p), why, reason)
	default:
		r.files[p] = &File{Data: data, Why: why}
	}
}

// walk adds every file under dir (a role, templates/, group_vars/),
// leaving out what must not travel.
func (r *resolver) walk(dir, why string) {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(e.Name(), ".") {
			r.skip(p, "hidden")
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if r.isState(p) {
			r.skip(p, "rollguard's state directory")
			return filepath.SkipDir
		}
		if e.IsDir() {
			return nil
		}
		if !e.Type().IsRegular() {
			r.skip(p, "not a regular file")
			return nil
		}
		if _, ok := r.files[p]; ok {
			return nil
		}
		if _, ok := r.secrets[p]; ok {
			return nil
		}
		if nameLooksSecret(e.Name()) {
			r.skip(p, "named like a vault password file or a private key")
			return nil
		}
		data, reason, err := r.read(p)
		switch {
		case err != nil:
			r.errorf("%s (%s): %w", r.display(p), why, err)
		case reason == reasonKey || reason == reasonJob:
			r.skip(p, reason)
		case reason != "":
			r.errorf("%s (%s) cannot be embedded: it is %s", r.display(p), why, reason)
		default:
			r.files[p] = &File{Data: data, Why: why}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.errorf("%s (%s): %w", r.display(dir), why, err)
	}
}

func (r *resolver) skip(p, reason string) {
	r.skipped[p] = reason
}

func (r *resolver) isState(p string) bool {
	rel, err := filepath.Rel(r.src.StateDir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// secret records a secret file the run expects at p.
func (r *resolver) secret(p, why string) {
	if s, ok := r.secrets[p]; ok {
		if !strings.Contains(s.Why, why) {
			s.Why += ", " + why
		}
		return
	}
	delete(r.files, p)
	r.secrets[p] = &Secret{Why: why}
}

// Reasons a file cannot travel.
const (
	reasonKey = "a private key"
	reasonJob = "a rendered Nomad job (job.json)"
)

// read returns p's content, or why it must not be embedded.
func (r *resolver) read(p string) ([]byte, string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", errors.New("does not exist")
		}
		return nil, "", err
	}
	if fi.IsDir() {
		return nil, "", errors.New("is a directory, not a file")
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Sprintf("%s, over the %s limit of one embedded file (use an artifact)", Size(int(fi.Size())), Size(MaxFileSize)), nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, "", err
	}
	switch {
	case isPrivateKey(data):
		return nil, reasonKey, nil
	case isRenderedJob(data):
		return nil, reasonJob, nil
	case !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0:
		return nil, "binary (a template carries text only; use an artifact)", nil
	}
	return data, "", nil
}

// isPrivateKey says whether data holds PEM or OpenSSH private key material.
func isPrivateKey(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN")) && bytes.Contains(data, []byte("PRIVATE KEY-----"))
}

// isRenderedJob says whether data is a job as `rollguard nomad job`
// prints it ({"Job": {...}}): it embeds a whole earlier bundle.
func isRenderedJob(data []byte) bool {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	var j struct {
		Job json.RawMessage
	}
	return json.Unmarshal(t, &j) == nil && len(j.Job) > 0 && string(j.Job) != "null"
}

// secretName matches file names of keys and vault password files, which
// are left out even before their content is looked at.
var secretName = regexp.MustCompile(`(?i)^(id_(rsa|dsa|ecdsa|ed25519)(_sk)?|.*vault[-_.]?pass(word)?.*|.*\.(pem|key|p12|pfx|ppk|jks|keystore))$`)

func nameLooksSecret(name string) bool {
	if strings.HasSuffix(name, ".pub") || strings.HasSuffix(name, ".crt") {
		return false
	}
	// A vault-encrypted vars file may be called vault_password.yml and
	// is safe to carry (encrypted); a .pem may be a certificate: the
	// content check decides for those.
	if strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".pem") {
		return false
	}
	return secretName.MatchString(name)
}

// bundle turns the collected absolute paths into a Bundle rooted at the
// closest common directory.
func (r *resolver) bundle() (*Bundle, error) {
	root := r.src.Dir
	for p := range r.files {
		root = commonDir(root, p)
	}
	for p := range r.secrets {
		root = commonDir(root, p)
	}
	rel := func(p string) string {
		s, err := filepath.Rel(root, p)
		if err != nil {
			return p
		}
		return filepath.ToSlash(s)
	}
	b := &Bundle{Root: root, Spec: rel(r.src.Spec), Notes: r.notes}
	for _, p := range slices.Sorted(maps.Keys(r.files)) {
		f := r.files[p]
		f.Path = rel(p)
		b.Files = append(b.Files, *f)
	}
	if total := b.Total(); total > MaxTotalSize {
		return nil, fmt.Errorf("the rollout's %d files hold %s, over the %s limit of a bundle: use an artifact", len(b.Files), Size(total), Size(MaxTotalSize))
	}
	items := map[string]string{}
	for _, p := range slices.Sorted(maps.Keys(r.secrets)) {
		s := r.secrets[p]
		s.Path = rel(p)
		s.Item = itemName(s.Path)
		if other, ok := items[s.Item]; ok {
			return nil, fmt.Errorf("secret files %s and %s would share the item name %s: rename one", other, s.Path, s.Item)
		}
		items[s.Item] = s.Path
		b.Secrets = append(b.Secrets, *s)
	}
	for _, p := range slices.Sorted(maps.Keys(r.skipped)) {
		path := rel(strings.TrimSuffix(p, string(filepath.Separator)))
		if strings.HasSuffix(p, string(filepath.Separator)) {
			path += "/"
		}
		b.Skipped = append(b.Skipped, Skipped{Path: path, Reason: r.skipped[p]})
	}
	if r.requirements != "" {
		b.Requirements = rel(r.requirements)
	}
	return b, nil
}

// itemName is "file_" and path's letters and digits, others as _.
func itemName(path string) string {
	var sb strings.Builder
	sb.WriteString("file")
	last := byte(0)
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			c = '_'
		}
		if c == '_' && last == '_' {
			continue
		}
		if last == 0 && c != '_' {
			sb.WriteByte('_')
		}
		sb.WriteByte(c)
		last = c
	}
	return strings.TrimRight(sb.String(), "_")
}

func commonDir(a, p string) string {
	for {
		rel, err := filepath.Rel(a, p)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return a
		}
		parent := filepath.Dir(a)
		if parent == a {
			return a
		}
		a = parent
	}
}

// Size prints n bytes for a person (12.3 KiB).
func Size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
