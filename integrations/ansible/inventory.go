package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"

	"github.com/rollguard/rollguard/ports"
)

// Inventory reads the hosts of group (default "all") from an Ansible
// inventory in any format Ansible reads (INI, YAML, a plugin
// configuration), through `ansible-inventory --list`, so rollguard sees
// exactly the hosts and variables Ansible would. Hosts come in the order
// Ansible lists them, children groups after a group's own hosts, each
// once. Cancelling ctx kills ansible-inventory.
func Inventory(ctx context.Context, binary, path, group string) ([]ports.Host, error) {
	if binary == "" {
		binary = "ansible-inventory"
	}
	if group == "" {
		group = "all"
	}
	cmd := exec.CommandContext(ctx, binary, "-i", path, "--list")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		return nil, fmt.Errorf("read inventory %s with %s: %w: %s", path, binary, err, msg)
	}
	return parseInventoryList(stdout.Bytes(), path, group)
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
	type groupDoc struct {
		Hosts    []string `json:"hosts"`
		Children []string `json:"children"`
	}
	groups := map[string]groupDoc{}
	for name, raw := range doc {
		if name == "_meta" {
			continue
		}
		var g groupDoc
		if err := json.Unmarshal(raw, &g); err != nil {
			return nil, fmt.Errorf("inventory %s: group %s: %w", path, name, err)
		}
		groups[name] = g
	}
	if _, ok := groups[group]; !ok {
		return nil, fmt.Errorf("inventory %s has no group %q", path, group)
	}
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
			hosts = append(hosts, ports.Host{Name: h, Address: addr, Vars: vars})
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
