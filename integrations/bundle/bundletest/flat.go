// Package bundletest writes the rollout layouts that tests of bundles and
// of the Nomad job share. It is not a _test file so that the end-to-end
// tests of package main can use it too.
package bundletest

import (
	"os"
	"path/filepath"
)

// Secret contents of the flat layout: none of them may appear in a
// bundle, a rendered job or its output.
const (
	VaultPassword = "correct-horse-battery-staple-vault"
	SSHKey        = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBrb2xsZ3VhcmQtdGVzdC1rZXktbm90LWEtcmVhbC1vbmUAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
	// GitConfig is .git/config, with a token in a remote URL as many
	// CI checkouts have it.
	GitConfig = "[remote \"origin\"]\n\turl = https://x-access-token:ghs_s3cr3tgittoken@github.com/acme/fleet.git\n"
	// StateHistory is a history entry in .rollguard/.
	StateHistory = `{"host":"web-1","version":"state-must-not-travel"}`
	// EarlierJob is a job.json rendered by an earlier `rollguard nomad job`.
	EarlierJob = `{"Job": {"ID": "rollguard-web-flat", "Meta": {"earlier": "job-must-not-travel"}}}`
)

// FlatSpec is the flat layout's rollout.yaml: everything next to site.yml,
// metrics credentials and the Slack webhook from ${VAR}s.
const FlatSpec = `name: web-flat
targets:
  inventory: inventory.ini
  group: web
canary: {hosts: 1, monitor: 3m}
apply:
  playbook: site.yml
  version: ${GITHUB_SHA:-manual}
  vault_password_file: .vault-pass
metrics:
  url: ${VM_URL}
  bearer_token: ${METRICS_TOKEN}
  interval: 15s
  queries:
    latency_p95: {query: 'histogram_quantile(0.95, sum by (le, instance) (rate(http_request_duration_seconds_bucket[1m])))'}
policies:
  - file: latency.yaml
alerts:
  - {type: slack, url: "${SLACK_WEBHOOK_URL}"}
`

// Flat writes the flat layout into dir: rollout.yaml next to site.yml,
// with what such a directory holds in real life besides the rollout: a
// vault password file, an SSH key (named by ansible.cfg), .git, the local
// state directory .rollguard/, an earlier job.json, notes.
func Flat(dir string) error {
	files := map[string]string{
		"rollout.yaml": FlatSpec,
		"latency.yaml": "name: latency\nrollback_when: 'fraction(hosts, .degraded) >= 0.3'\n",
		"site.yml": `- hosts: web
  vars_files: [secrets.yml]
  tasks:
    - ansible.builtin.template: {src: templates/app.conf.j2, dest: /etc/app.conf}
`,
		"secrets.yml":                   "$ANSIBLE_VAULT;1.1;AES256\n3338643464306431383565363035653833\n",
		"templates/app.conf.j2":         "workers = {{ app_workers | default(4) }}\n",
		"templates/.app.conf.j2.swp":    "editor swap file\n",
		"inventory.ini":                 "[web]\nweb-1 ansible_host=10.0.0.1\nweb-2 ansible_host=10.0.0.2\n",
		"group_vars/web.yml":            "ansible_user: deploy\n",
		"ansible.cfg":                   "[defaults]\ninventory = inventory.ini\nprivate_key_file = id_ed25519\nhost_key_checking = True\n",
		"requirements.yml":              "collections:\n  - name: community.general\n",
		".vault-pass":                   VaultPassword + "\n",
		"id_ed25519":                    SSHKey,
		"id_ed25519.pub":                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtvbGxndWFyZC10ZXN0 deploy@fleet\n",
		".git/HEAD":                     "ref: refs/heads/main\n",
		".git/config":                   GitConfig,
		".rollguard/history/web-1.json": StateHistory,
		"job.json":                      EarlierJob,
		"NOTES.md":                      "How we roll out web.\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == ".vault-pass" || name == "id_ed25519" {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}
