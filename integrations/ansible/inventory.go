package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/rollguard/rollguard/ports"
)

// InventoryQuery says which hosts to read from an inventory, and how.
type InventoryQuery struct {
	// Path is the inventory: a file (INI, YAML), a directory or a plugin
	// configuration (targets.inventory). Required.
	Path string
	// Group is the group whose hosts are read (default "all").
	Group string
	// Dir is the working directory, where ansible.cfg is found: the
	// spec's directory, as for ansible-playbook (default: the current
	// directory).
	Dir string
	// VaultPasswordFile decrypts vault-encrypted group_vars and host_vars
	// (apply.vault_password_file); never logged.
	VaultPasswordFile string
	// Binary is the ansible-inventory executable (default
	// "ansible-inventory", looked up in PATH).
	Binary string
	// Env holds extra environment variables, as Config.Env.
	Env map[string]string
}

// Inventory reads the hosts of q.Group from an Ansible inventory in any
// format Ansible reads, through `ansible-inventory --list`, in q.Dir and
// with the vault password file, so rollguard sees exactly the hosts and
// variables ansible-playbook will. Hosts come in the order Ansible lists
// them, children groups after a group's own hosts, each once. Like a
// playbook run, it cannot prompt (no terminal, no stdin). Cancelling ctx
// kills ansible-inventory.
func Inventory(ctx context.Context, q InventoryQuery) ([]ports.Host, error) {
	if q.Binary == "" {
		q.Binary = "ansible-inventory"
	}
	if q.Group == "" {
		q.Group = "all"
	}
	path, err := filepath.Abs(q.Path)
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", q.Path, err)
	}
	args := []string{"-i", path, "--list"}
	if q.VaultPasswordFile != "" {
		vault, err := filepath.Abs(q.VaultPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read inventory %s: vault password file: %w", q.Path, err)
		}
		args = append(args, "--vault-password-file", vault)
	}
	cmd := exec.CommandContext(ctx, q.Binary, args...)
	cmd.Dir = q.Dir
	env := processEnv(q.Env)
	env["ANSIBLE_NOCOLOR"] = "1"
	cmd.Env = envList(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("read inventory %s with %s: %w: %s", q.Path, q.Binary, err, ansibleMessage(stderr.String(), ""))
	}
	return parseInventoryList(stdout.Bytes(), q.Path, q.Group)
}

// inventoryGroup is one group of `ansible-inventory --list`.
type inventoryGroup struct {
	Hosts    []string `json:"hosts"`
	Children []string `json:"children"`
}

// parseInventoryList walks `ansible-inventory --list` output.
func parseInventoryList(data []byte, path, group string) ([]ports.Host, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("inventory %s: ansible-inventory output: %w", path, err)
	}
	var meta struct {
		HostVars map[string]map[string]any `json:"hostvars"`
	}
	if raw, ok := doc["_meta"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("inventory %s: _meta: %w", path, err)
		}
	}
	groups := map[string]inventoryGroup{}
	for name, raw := range doc {
		if name == "_meta" {
			continue
		}
		var g inventoryGroup
		if err := json.Unmarshal(raw, &g); err != nil {
			return nil, fmt.Errorf("inventory %s: group %s: %w", path, name, err)
		}
		groups[name] = g
	}
	if _, ok := groups[group]; !ok {
		return nil, fmt.Errorf("inventory %s has no group %q", path, group)
	}
	tags := groupNames(groups)
	var hosts []ports.Host
	seenHost := map[string]bool{}
	seenGroup := map[string]bool{}
	var walk func(string)
	walk = func(name string) {
		if seenGroup[name] {
			return
		}
		seenGroup[name] = true
		g := groups[name]
		for _, h := range g.Hosts {
			if seenHost[h] {
				continue
			}
			seenHost[h] = true
			vars := meta.HostVars[h]
			addr := h
			if a, ok := vars["ansible_host"].(string); ok && a != "" {
				addr = a
			}
			hosts = append(hosts, ports.Host{Name: h, Address: addr, Vars: vars, Tags: tags[h]})
		}
		for _, c := range g.Children {
			walk(c)
		}
	}
	walk(group)
	if len(hosts) == 0 {
		return nil, fmt.Errorf("inventory %s: group %q has no hosts", path, group)
	}
	return hosts, nil
}

// groupNames maps each host to the groups it is in, directly or through
// a child group, in name order, as Ansible's group_names has them
// (without all and ungrouped): an inventory host's tags, so canary.hosts
// {tag: canary} selects the inventory's [canary] group. One walk per
// group, not per host and group: an inventory of 10,000 hosts in large
// groups is read at every plan and run.
func groupNames(groups map[string]inventoryGroup) map[string][]string {
	out := map[string][]string{}
	for name := range groups {
		if name == "all" || name == "ungrouped" {
			continue
		}
		seenGroup, seenHost := map[string]bool{}, map[string]bool{}
		var walk func(string)
		walk = func(g string) {
			if seenGroup[g] {
				return
			}
			seenGroup[g] = true
			for _, h := range groups[g].Hosts {
				if !seenHost[h] {
					seenHost[h] = true
					out[h] = append(out[h], name)
				}
			}
			for _, c := range groups[g].Children {
				walk(c)
			}
		}
		walk(name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}
