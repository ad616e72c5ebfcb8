package runner

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// versionDirs are the directories beside a playbook that Ansible reads
// for it (roles, templates and files a task names without a path, task
// and variable files, inventory variables, plugins): what the playbook
// includes, in the layout Ansible resolves by itself.
var versionDirs = []string{
	"files", "filter_plugins", "group_vars", "handlers", "host_vars", "library",
	"lookup_plugins", "module_utils", "roles", "tasks", "templates", "vars",
}

// defaultVersion is apply.version when the spec does not set one: "h-"
// and the first 12 hex digits of a SHA-256 over, in this order,
//
//  1. the playbook file's bytes;
//  2. every regular file under the playbook's directory's versionDirs
//     (roles/, templates/, tasks/, ...), in lexical order of its path
//     relative to that directory, skipping names that start with a dot;
//  3. apply.extra_vars as JSON (keys sorted).
//
// Each part goes in with its name and length, so no two different inputs
// hash alike. The same change gives the same version on every machine and
// at every run; editing the playbook, a template, a role or a variable
// gives a new one. Files elsewhere (the spec, reports, the state
// directory, other files beside the playbook) do not count: a change they
// make is named by setting apply.version.
func defaultVersion(a *Apply) (string, error) {
	h := sha256.New()
	data, err := os.ReadFile(a.Playbook)
	if err != nil {
		return "", err
	}
	hashPart(h, filepath.Base(a.Playbook), data)
	dir := filepath.Dir(a.Playbook)
	for _, sub := range versionDirs {
		root := filepath.Join(dir, sub)
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			continue
		}
		var files []string
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), ".") && p != root {
				if e.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if e.Type()&fs.ModeSymlink != 0 {
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					files = append(files, p)
				}
				return nil
			}
			if e.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		slices.Sort(files)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			rel, _ := filepath.Rel(dir, p)
			hashPart(h, filepath.ToSlash(rel), data)
		}
	}
	vars, err := json.Marshal(a.ExtraVars)
	if err != nil {
		return "", fmt.Errorf("extra_vars: %w", err)
	}
	hashPart(h, "extra_vars", vars)
	return "h-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// hashPart adds one named part with its length.
func hashPart(h hash.Hash, name string, data []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(len(data)))
	h.Write(n[:])
	h.Write(data)
}
