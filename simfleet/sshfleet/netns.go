package sshfleet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The network: one bridge in this machine's namespace, rgsf<k>, holding
// 198.18.<k>.1/24 (198.18.0.0/15 is set aside for test networks, RFC
// 2544); one namespace per host, rgsf<k>-<i>, whose eth0 (198.18.<k>.<10+i>)
// is a veth pair with rgsf<k>v<i> on the bridge. k is the first index whose
// bridge could be created, so fleets of concurrent test processes never
// share a subnet; the bridge's alias names the process that owns it, so
// a later fleet removes what a killed test process left.

const (
	linkPrefix  = "rgsf"
	aliasPrefix = "rollguard-sshfleet pid="
	maxFleets   = 250
)

// network is one fleet's bridge and namespaces.
type network struct {
	index      int
	bridge     string
	namespaces []string
	veths      []string
}

func (n *network) subnet() string { return fmt.Sprintf("198.18.%d", n.index) }

// address is host i's (from 0) address.
func (n *network) address(i int) string { return fmt.Sprintf("%s.%d", n.subnet(), 11+i) }

func (n *network) namespace(i int) string { return fmt.Sprintf("%s%d-%d", linkPrefix, n.index, i+1) }

// ip runs the ip command.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetwork claims a subnet (a bridge of its own) and makes one
// namespace per host on it.
func newNetwork(ctx context.Context, hosts int) (*network, error) {
	sweepNetworks(ctx)
	n := &network{}
	for k := 1; k <= maxFleets; k++ {
		name := fmt.Sprintf("%s%d", linkPrefix, k)
		if ip(ctx, "link", "add", name, "type", "bridge") == nil {
			n.index, n.bridge = k, name
			break
		}
	}
	if n.bridge == "" {
		return nil, fmt.Errorf("sshfleet: no free bridge %s1..%s%d", linkPrefix, linkPrefix, maxFleets)
	}
	steps := [][]string{
		{"link", "set", "dev", n.bridge, "alias", aliasPrefix + strconv.Itoa(os.Getpid())},
		{"addr", "add", n.subnet() + ".1/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	for i := range hosts {
		ns, veth := n.namespace(i), fmt.Sprintf("%s%dv%d", linkPrefix, n.index, i+1)
		n.namespaces = append(n.namespaces, ns)
		n.veths = append(n.veths, veth)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"link", "set", veth, "master", n.bridge, "up"},
			[]string{"-n", ns, "addr", "add", n.address(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			n.remove(ctx)
			return nil, fmt.Errorf("sshfleet: %w", err)
		}
	}
	return n, nil
}

// remove kills what still runs in the namespaces, deletes the veth pairs
// (at once: a namespace's own devices go only when the kernel gets to
// it, and a veth left behind would stop the next fleet of this index),
// the namespaces and last the bridge, which is the index's claim.
func (n *network) remove(ctx context.Context) error {
	var errs []string
	for _, veth := range n.veths {
		if err := ip(ctx, "link", "del", veth); err != nil && linkExists(veth) {
			errs = append(errs, err.Error())
		}
	}
	for _, ns := range n.namespaces {
		killNamespace(ctx, ns)
		if err := ip(ctx, "netns", "del", ns); err != nil && namespaceExists(ns) {
			errs = append(errs, err.Error())
		}
	}
	if err := ip(ctx, "link", "del", n.bridge); err != nil && linkExists(n.bridge) {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("sshfleet: remove network: %s", strings.Join(errs, "; "))
	}
	return nil
}

func namespaceExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// killNamespace SIGKILLs every process inside ns and waits for them to be
// gone, for at most 5 s (a zombie that nobody reaps stays listed).
func killNamespace(ctx context.Context, ns string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		pids := strings.Fields(string(out))
		if err != nil || len(pids) == 0 {
			return
		}
		for _, f := range pids {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sweepNetworks removes the bridges and namespaces of fleets whose owning
// process is gone (a test binary killed by its timeout runs no cleanup).
func sweepNetworks(ctx context.Context) {
	links, _ := filepath.Glob("/sys/class/net/" + linkPrefix + "*")
	for _, link := range links {
		name := filepath.Base(link)
		k, err := strconv.Atoi(strings.TrimPrefix(name, linkPrefix))
		if err != nil {
			continue // a veth (rgsf<k>v<i>), removed with its namespace
		}
		alias, err := os.ReadFile(filepath.Join(link, "ifalias"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(alias)), aliasPrefix))
		if err != nil || !strings.HasPrefix(string(alias), aliasPrefix) || processAlive(pid) {
			continue
		}
		n := &network{index: k, bridge: name}
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", linkPrefix, k)) {
				n.namespaces = append(n.namespaces, e.Name())
			}
		}
		veths, _ := filepath.Glob(fmt.Sprintf("/sys/class/net/%s%dv*", linkPrefix, k))
		for _, v := range veths {
			n.veths = append(n.veths, filepath.Base(v))
		}
		_ = n.remove(ctx)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// listenIn opens a TCP listener on addr inside namespace ns. A socket
// belongs to the namespace of the thread that created it, for its whole
// life, so the server can then run on any thread: the listening thread
// enters ns, listens and comes back. It runs on a goroutine of its own so
// that if it cannot come back, the thread dies with the goroutine instead
// of returning to the scheduler inside ns.
func listenIn(ctx context.Context, ns, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer home.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter namespace %s: %w", ns, err)}
			return
		}
		var lc net.ListenConfig
		ln, lerr := lc.Listen(ctx, "tcp", addr)
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with this goroutine.
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: fmt.Errorf("leave namespace %s: %w", ns, err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln: ln, err: lerr}
	}()
	r := <-ch
	return r.ln, r.err
}
