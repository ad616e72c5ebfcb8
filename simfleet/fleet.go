// Package simfleet is a simulated fleet of web hosts for `rollguard demo`
// and the end-to-end tests. Each host is a directory holding its app.conf
// (the file the playbooks in testdata/playbooks write) and an HTTP exporter
// on 127.0.0.1 whose request latency, error share and CPU follow that file,
// with realistic noise on top (noise.go). VictoriaMetrics scrapes the
// exporters with the configuration ScrapeConfig writes; queries.go holds
// the PromQL the demo watches.
//
// Counters are computed lazily from the elapsed clock time when scraped:
// there is no goroutine per host besides the HTTP server's.
package simfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a simulated fleet.
type Config struct {
	// Dir holds one directory per host, Dir/<name>/. Required; created if
	// missing.
	Dir string
	// Hosts is the number of hosts, named web-1 .. web-N (default 3).
	Hosts int
	// Seed makes the noise reproducible: the same seed gives the same
	// per-host baselines and the same noise at the same clock times.
	Seed int64
	// Clock is the simulated time source (default time.Now).
	Clock func() time.Time
	// Logger receives configuration changes (default: discard).
	Logger *slog.Logger
	// Listen opens the exporter socket of host i (0 for web-1); the
	// host's Address and Port are the listener's. Default: 127.0.0.1 on
	// a free port. sshfleet listens inside each host's network namespace.
	Listen func(ctx context.Context, i int) (net.Listener, error)
}

// Host is one simulated host.
type Host struct {
	// Name is web-1 .. web-N.
	Name string
	// Address is the exporter's address (127.0.0.1 unless Config.Listen
	// says otherwise).
	Address string
	// Port is the exporter's port.
	Port int
	// Dir is the host's directory, holding app.conf.
	Dir string
}

// Target is the exporter's host:port, as scraped.
func (h Host) Target() string { return net.JoinHostPort(h.Address, strconv.Itoa(h.Port)) }

// Vars are the Ansible host variables the playbooks in testdata/playbooks
// need: host_dir, and a local connection (the hosts are directories on
// this machine).
func (h Host) Vars() map[string]any {
	return map[string]any{
		"host_dir":                   h.Dir,
		"ansible_connection":         "local",
		"ansible_python_interpreter": "auto_silent",
	}
}

// Fleet is a running simulated fleet.
type Fleet struct {
	hosts   []Host
	sims    []*host
	byName  map[string]*host
	servers []*http.Server
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	stopCtx   func() bool
}

// Start creates the hosts' directories, writes each app.conf with
// NeutralConf (removing an app.conf.prev left by an earlier run), and
// starts one exporter per host. The fleet runs until Close is called or ctx
// is cancelled.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Dir == "" {
		return nil, errors.New("simfleet: Config.Dir is required")
	}
	if cfg.Hosts <= 0 {
		cfg.Hosts = 3
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cpu, err := loadShape("ec2_cpu_utilization_5f5533.csv")
	if err != nil {
		return nil, fmt.Errorf("simfleet: %w", err)
	}
	traffic, err := loadShape("elb_request_count_8c0756.csv")
	if err != nil {
		return nil, fmt.Errorf("simfleet: %w", err)
	}

	listen := cfg.Listen
	if listen == nil {
		var lc net.ListenConfig
		listen = func(ctx context.Context, _ int) (net.Listener, error) { return lc.Listen(ctx, "tcp", "127.0.0.1:0") }
	}
	f := &Fleet{byName: map[string]*host{}}
	epoch := cfg.Clock()
	for i := range cfg.Hosts {
		if err := ctx.Err(); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simfleet: start: %w", err)
		}
		name := fmt.Sprintf("web-%d", i+1)
		dir, err := filepath.Abs(filepath.Join(cfg.Dir, name))
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simfleet: host %s: %w", name, err)
		}
		h, err := newHost(name, dir, newNoise(cfg.Seed, i, cpu, traffic), cfg.Clock, epoch, log)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simfleet: host %s: %w", name, err)
		}
		ln, err := listen(ctx, i)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("simfleet: host %s: listen: %w", name, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		f.servers = append(f.servers, srv)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("simfleet: exporter stopped", "host", name, "err", err)
			}
		}()
		f.sims = append(f.sims, h)
		f.byName[name] = h
		addr := ln.Addr().(*net.TCPAddr)
		f.hosts = append(f.hosts, Host{Name: name, Address: addr.IP.String(), Port: addr.Port, Dir: dir})
	}
	f.stopCtx = context.AfterFunc(ctx, func() { _ = f.Close() })
	log.Info("simfleet: started", "hosts", len(f.hosts), "dir", cfg.Dir)
	return f, nil
}

func newHost(name, dir string, n noise, clock func() time.Time, epoch time.Time, log *slog.Logger) (*host, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(dir, "app.conf.prev")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	h := &host{
		name: name, dir: dir, noise: n, clock: clock, epoch: epoch, log: log,
		conf: NeutralConf(), last: epoch, changed: epoch, buckets: make([]float64, len(Buckets)),
	}
	if err := os.WriteFile(h.confPath(), []byte(h.conf.Format()), 0o644); err != nil {
		return nil, err
	}
	h.file = statFile(h.confPath())
	return h, nil
}

// Hosts returns the hosts in name order (web-1 first).
func (f *Fleet) Hosts() []Host { return append([]Host(nil), f.hosts...) }

// Writes reports how many times the host's app.conf changed on disk since
// Start (Start's own write not counted): a change is a new inode, size or
// modification time, noticed at each scrape and at each call of Writes.
// Two writes between two such looks count once, so the count is exact for
// "never written" and a lower bound otherwise. Unknown hosts report -1.
func (f *Fleet) Writes(name string) int {
	h := f.byName[name]
	if h == nil {
		return -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(h.clock())
	return h.writes
}

// Conf returns the configuration the host currently runs (as of the last
// scrape or call), after looking at its app.conf.
func (f *Fleet) Conf(name string) (AppConf, bool) {
	h := f.byName[name]
	if h == nil {
		return AppConf{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(h.clock())
	return h.conf, true
}

// Changed reports when the host's configuration last changed (Start, or
// the modification time of the app.conf that changed it), after looking
// at its app.conf. Unknown hosts report the zero time.
func (f *Fleet) Changed(name string) time.Time {
	h := f.byName[name]
	if h == nil {
		return time.Time{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(h.clock())
	return h.changed
}

// ScrapeConfig writes a Prometheus/VictoriaMetrics -promscrape.config file
// that scrapes every exporter each second, labelling each series
// instance=<host name>.
func (f *Fleet) ScrapeConfig(path string) error {
	var b strings.Builder
	b.WriteString("# Written by simfleet: scrape every simulated host each second.\n")
	b.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n")
	// honor_timestamps: each sample keeps the moment the exporter
	// integrated its counters to (see writeMetrics), so that rates do not
	// move with how long a scrape waited on a loaded machine.
	b.WriteString("scrape_configs:\n  - job_name: simfleet\n    honor_timestamps: true\n    static_configs:\n")
	for _, h := range f.hosts {
		fmt.Fprintf(&b, "      - targets: [%q]\n        labels: {simfleet_host: %q}\n", h.Target(), h.Name)
	}
	// The instance label would be 127.0.0.1:<port>; rollguard's default
	// host_value is the host's name.
	b.WriteString("    relabel_configs:\n")
	b.WriteString("      - source_labels: [simfleet_host]\n        target_label: instance\n")
	b.WriteString("      - action: labeldrop\n        regex: simfleet_host\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("simfleet: scrape config %s: %w", path, err)
	}
	return nil
}

// Close stops every exporter and waits for them. It is safe to call more
// than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		if f.stopCtx != nil {
			f.stopCtx()
		}
		var errs []error
		for _, srv := range f.servers {
			if err := srv.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		f.wg.Wait()
		if len(errs) > 0 {
			f.closeErr = fmt.Errorf("simfleet: close: %w", errors.Join(errs...))
		}
	})
	return f.closeErr
}
