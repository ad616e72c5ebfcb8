package ansible

import (
	"fmt"
	"strings"

	"github.com/rollguard/rollguard/ports"
)

// A rollout runs unattended: nobody answers a prompt, and a run must not
// ride on connections it did not open. So:
//
//   - ansible-playbook (and everything it starts) runs in a session of its
//     own, without a controlling terminal (process.go): ssh cannot ask
//     "Are you sure you want to continue connecting?" nor for a password
//     or passphrase, and fails at once instead, which Ansible reports as
//     the host being unreachable; SSH_ASKPASS_REQUIRE=never keeps ssh from
//     asking through an askpass program instead.
//   - SSH control sockets (ControlPersist connections) live in the run's
//     own directory, so a run never reuses a master connection of an
//     earlier process (which skipped its host-key check long ago), and the
//     masters are told to exit when the run ends (workspace.go).
//   - A host whose key was rejected is named with the fix.

// sshEnv is the environment that keeps a run's SSH connections
// non-interactive and private to it.
func sshEnv(ws *workspace) map[string]string {
	return map[string]string{
		// Ansible's default control_path is this directory and a short
		// hash; a control_path of the user's keeps working where it
		// starts with %(directory)s.
		"ANSIBLE_SSH_CONTROL_PATH_DIR": ws.path(controlDir),
		"ANSIBLE_LOCAL_TEMP":           ws.path(localTempDir),
		"SSH_ASKPASS_REQUIRE":          "never",
	}
}

// hostKeyMarkers are what ssh says when it refuses a host's key.
var hostKeyMarkers = []string{
	"Host key verification failed",
	"REMOTE HOST IDENTIFICATION HAS CHANGED",
}

// explainHostKeys adds, to the message of every unreachable host whose
// key ssh refused, which host it is and how to fix it.
func explainHostKeys(res ports.ApplyResult, inventory []ports.Host) {
	byName := make(map[string]ports.Host, len(inventory))
	for _, h := range inventory {
		byName[h.Name] = h
	}
	for i, hr := range res.Hosts {
		if hr.Status != ports.HostUnreachable || !containsAny(hr.Message, hostKeyMarkers) {
			continue
		}
		res.Hosts[i].Message = hostKeyMessage(byName[hr.Host], hr.Host, hr.Message)
	}
}

func hostKeyMessage(h ports.Host, name, msg string) string {
	addr := h.Address
	if addr == "" {
		addr = name
	}
	keyscan := "ssh-keyscan -H " + addr
	if p, ok := h.Vars["ansible_port"]; ok {
		keyscan = fmt.Sprintf("ssh-keyscan -H -p %v %s", p, addr)
	}
	return fmt.Sprintf("host key of %s (%s) not accepted: it is not in known_hosts, or differs from the key there; "+
		"rollguard never answers a host-key prompt. Fix: add the host's key (%s >> ~/.ssh/known_hosts, or to the "+
		"UserKnownHostsFile your ssh args name), or, if you accept the risk, host_key_checking = False in ansible.cfg "+
		"or -o StrictHostKeyChecking=accept-new in ansible_ssh_common_args (%s)", name, addr, keyscan, msg)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
