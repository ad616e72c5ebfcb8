// Package sshfleet is a simulated fleet reached the way users reach theirs:
// over SSH, with a key, by address. Each host is a network namespace of
// this machine (ip netns) on a bridge, with its own sshd (its own config
// and host key; root logs in with the fleet's client key only) and its own
// simfleet exporter listening on the host's address. The hosts share this
// machine's file system, so a host's directory (Host.Dir, holding the
// app.conf its exporter follows) is the same path seen over SSH.
//
// It needs root (namespaces, veth pairs, a bridge) and Debian's
// openssh-server (sshd) and iproute2 (ip); Check says what is missing.
// Close removes everything; a fleet whose test process was killed is
// removed by the next Start.
package sshfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rollguard/rollguard/simfleet"
)

// Sshd is the OpenSSH server binary (Debian's openssh-server).
const Sshd = "/usr/sbin/sshd"

// ExporterPort is the port each host's exporter listens on, on the host's
// address.
const ExporterPort = 9100

// ErrUnsupported says this machine or user cannot run an SSH fleet.
var ErrUnsupported = errors.New("sshfleet: cannot run here")

// Check says whether an SSH fleet can run here: root, ip, sshd,
// ssh-keygen.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, veth pairs and a bridge need it; run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (apt-get install iproute2)")
	}
	if _, err := os.Stat(Sshd); err != nil {
		missing = append(missing, Sshd+" (apt-get install openssh-server, or bash ci/install-deps.sh)")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		missing = append(missing, "ssh-keygen (apt-get install openssh-client)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: needs %s", ErrUnsupported, strings.Join(missing, ", "))
	}
	return nil
}

// Config configures an SSH fleet.
type Config struct {
	// Dir holds the hosts' directories (Dir/hosts/<name>) and the SSH
	// files (Dir/ssh). Required; created if missing.
	Dir string
	// Hosts is the number of hosts, web-1 .. web-N (default 3).
	Hosts int
	// Seed makes the exporters' noise reproducible.
	Seed int64
	// Logger receives the fleet's events (default: discard).
	Logger *slog.Logger
}

// Host is one host of the fleet.
type Host struct {
	// Name, Address (in 198.18.0.0/15), Port (the exporter's,
	// ExporterPort) and Dir (holding app.conf).
	simfleet.Host
	// Namespace is the host's network namespace.
	Namespace string
	// HostKey is the public half of sshd's host key, as in known_hosts
	// after the address ("ssh-ed25519 AAAA...").
	HostKey string
}

// Fleet is a running SSH fleet.
type Fleet struct {
	*simfleet.Fleet
	dir   string
	net   *network
	hosts []Host
	log   *slog.Logger

	mu    sync.Mutex
	sshds map[string]*sshd

	closeOnce sync.Once
	closeErr  error
}

// Start makes the network, writes the keys and sshd configurations,
// starts every sshd and exporter and waits until each sshd accepts
// connections. On error, what was made is removed.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("sshfleet: Config.Dir is required")
	}
	if cfg.Hosts <= 0 {
		cfg.Hosts = 3
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sshfleet: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "ssh"), 0o755); err != nil {
		return nil, fmt.Errorf("sshfleet: %w", err)
	}
	n, err := newNetwork(ctx, cfg.Hosts)
	if err != nil {
		return nil, err
	}
	f := &Fleet{dir: dir, net: n, log: log, sshds: map[string]*sshd{}}
	f.Fleet, err = simfleet.Start(ctx, simfleet.Config{
		Dir: filepath.Join(dir, "hosts"), Hosts: cfg.Hosts, Seed: cfg.Seed, Logger: log,
		Listen: func(ctx context.Context, i int) (net.Listener, error) {
			return listenIn(ctx, n.namespace(i), net.JoinHostPort(n.address(i), fmt.Sprint(ExporterPort)))
		},
	})
	if err != nil {
		n.remove(ctx)
		return nil, err
	}
	if err := f.setUp(ctx); err != nil {
		f.Close()
		return nil, err
	}
	log.Info("sshfleet: started", "hosts", len(f.hosts), "subnet", n.subnet()+".0/24")
	return f, nil
}

func (f *Fleet) setUp(ctx context.Context) error {
	if err := keygen(ctx, f.ClientKey()); err != nil {
		return err
	}
	pub, err := os.ReadFile(f.ClientKey() + ".pub")
	if err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	if err := os.WriteFile(f.sshPath("authorized_keys"), pub, 0o600); err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	var known strings.Builder
	for i, h := range f.Fleet.Hosts() {
		key := f.sshPath(h.Name, "ssh_host_ed25519_key")
		if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
			return fmt.Errorf("sshfleet: %w", err)
		}
		if err := keygen(ctx, key); err != nil {
			return err
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			return fmt.Errorf("sshfleet: %w", err)
		}
		fields := strings.Fields(string(pub))
		host := Host{Host: h, Namespace: f.net.namespace(i), HostKey: fields[0] + " " + fields[1]}
		fmt.Fprintf(&known, "%s %s\n", h.Address, host.HostKey)
		// SetEnv SHLVL=1: bash, run by sshd for a command, sources the
		// user's ~/.bashrc only as a top-level shell (SHLVL unset). The
		// fleet's hosts are this machine's root, whose ~/.bashrc may run
		// anything (here `pyenv init`, whose rehash takes a lock that a
		// session killed mid-way leaves behind, and every later login
		// then waits 60 s on it): a host of the fleet starts its
		// commands as a freshly installed one would, from sshd's PATH.
		conf := fmt.Sprintf(`# sshd of %s, written by rollguard's sshfleet
ListenAddress %s:22
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
SetEnv SHLVL=1
Subsystem sftp internal-sftp
LogLevel ERROR
`, h.Name, h.Address, key, f.sshPath(h.Name, "sshd.pid"), f.sshPath("authorized_keys"))
		if err := os.WriteFile(f.sshPath(h.Name, "sshd_config"), []byte(conf), 0o644); err != nil {
			return fmt.Errorf("sshfleet: %w", err)
		}
		f.hosts = append(f.hosts, host)
	}
	if err := os.WriteFile(f.KnownHosts(), []byte(known.String()), 0o644); err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	for _, h := range f.hosts {
		if err := f.StartSSH(ctx, h.Name); err != nil {
			return err
		}
	}
	return nil
}

func keygen(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshfleet", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sshfleet: ssh-keygen %s: %w: %s", path, err, out)
	}
	return nil
}

func (f *Fleet) sshPath(elem ...string) string {
	return filepath.Join(append([]string{f.dir, "ssh"}, elem...)...)
}

// Hosts returns the hosts in name order (web-1 first).
func (f *Fleet) Hosts() []Host { return append([]Host(nil), f.hosts...) }

// ClientKey is the private key that logs in as root on every host.
func (f *Fleet) ClientKey() string { return f.sshPath("client_ed25519") }

// KnownHosts is a known_hosts file holding every host's key, by address.
func (f *Fleet) KnownHosts() string { return f.sshPath("known_hosts") }

func (f *Fleet) host(name string) (Host, bool) {
	for _, h := range f.hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// sshd is one running sshd; done is closed once it has been waited for.
type sshd struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartSSH starts the host's sshd in its namespace and waits until it
// accepts connections (or ctx ends). The sshd dies with this process.
func (f *Fleet) StartSSH(ctx context.Context, name string) error {
	h, ok := f.host(name)
	if !ok {
		return fmt.Errorf("sshfleet: no host %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sshds[name] != nil {
		return nil
	}
	logFile, err := os.Create(f.sshPath(name, "sshd.log"))
	if err != nil {
		return fmt.Errorf("sshfleet: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command("ip", "netns", "exec", h.Namespace, Sshd, "-D", "-e", "-f", f.sshPath(name, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sshfleet: start sshd of %s: %w", name, err)
	}
	s := &sshd{cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()

	addr := net.JoinHostPort(h.Address, "22")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			f.sshds[name] = s
			return nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(f.sshPath(name, "sshd.log"))
			return fmt.Errorf("sshfleet: sshd of %s exited: %v: %s", name, s.err, log)
		case <-ctx.Done():
			s.stop()
			return fmt.Errorf("sshfleet: sshd of %s on %s: %w", name, addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop kills the sshd and waits for it, so that its port is closed when
// stop returns.
func (s *sshd) stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// StopSSH stops the host's sshd and the sessions it serves: connecting
// to the host is then refused, as with a host whose sshd is down.
func (f *Fleet) StopSSH(ctx context.Context, name string) {
	f.mu.Lock()
	s := f.sshds[name]
	delete(f.sshds, name)
	f.mu.Unlock()
	if s != nil {
		s.stop()
	}
	// Session processes run in sessions of their own; the exporter is a
	// socket of this process, not a process in the namespace.
	if h, ok := f.host(name); ok {
		killNamespace(ctx, h.Namespace)
	}
}

// WriteInventory writes an INI inventory of the fleet: every host in
// group, with ansible_host and host_dir, logging in as root with
// ClientKey. Which known_hosts to trust is left to the caller (an
// ansible.cfg, ansible_ssh_common_args), as it is to a user.
func (f *Fleet) WriteInventory(path, group string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# The SSH fleet in %s, written by rollguard's sshfleet.\n[%s]\n", f.dir, group)
	for _, h := range f.hosts {
		fmt.Fprintf(&b, "%s ansible_host=%s host_dir=%s\n", h.Name, h.Address, h.Dir)
	}
	fmt.Fprintf(&b, "\n[all:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_python_interpreter=/usr/bin/python3\n", f.ClientKey())
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("sshfleet: inventory: %w", err)
	}
	return nil
}

// Close stops the exporters and every sshd, and removes the namespaces
// and the bridge. It is safe to call more than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		var errs []error
		if f.Fleet != nil {
			errs = append(errs, f.Fleet.Close())
		}
		// Close has no context of its own (it runs when a test's has
		// ended); bounded so that a stuck ip command cannot hang it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, h := range f.hosts {
			f.StopSSH(ctx, h.Name)
		}
		errs = append(errs, f.net.remove(ctx))
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}
