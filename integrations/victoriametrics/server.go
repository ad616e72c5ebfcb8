package victoriametrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// BinEnv names the environment variable that points at the
// victoria-metrics binary.
const BinEnv = "VICTORIA_METRICS_BIN"

// ErrNoBinary is returned by FindBinary and StartServer when no
// victoria-metrics binary can be found.
var ErrNoBinary = errors.New("victoria-metrics binary not found (set " + BinEnv + ", put it on PATH, or go install github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v1.151.0)")

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Bin is the victoria-metrics binary (default: FindBinary).
	Bin string
	// DataDir is -storageDataPath. Required: the caller owns its lifetime
	// (a test's t.TempDir()).
	DataDir string
	// ScrapeConfigPath is a Prometheus scrape config (-promscrape.config);
	// optional.
	ScrapeConfigPath string
	// ScrapeInterval, when set with ScrapeConfigPath, overrides the
	// config's global.scrape_interval (a copy is written into DataDir).
	ScrapeInterval time.Duration
	// StartTimeout bounds the wait for /health (default 30s).
	StartTimeout time.Duration
	// Logger receives the process' output at debug level (default: discard).
	Logger *slog.Logger
	// Addr, when set, is the 127.0.0.1:port to listen on (default: a free
	// port): a server restarted on its data directory keeps its URL.
	Addr string
}

// Server is a running victoria-metrics process on 127.0.0.1.
type Server struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{} // closed when the process has exited
	log  *slog.Logger
	out  *tailBuffer

	stopOnce sync.Once
	waitErr  error
}

// FindBinary returns the victoria-metrics binary: $VICTORIA_METRICS_BIN, then
// PATH, then ~/go/bin (or $GOBIN, $GOPATH/bin). The error wraps ErrNoBinary.
func FindBinary() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinEnv, p, ErrNoBinary)
		}
		return p, nil
	}
	if p, err := exec.LookPath("victoria-metrics"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("GOPATH"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "victoria-metrics")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", ErrNoBinary
}

// StartServer starts victoria-metrics on a free port of 127.0.0.1 and
// returns once /health answers OK. The server is set up for replaying old
// data: 100 years of retention, no response cache, no latency offset, so
// that a query right after Import (which flushes) sees the imported
// samples. Cancelling ctx during the start kills the process; afterwards
// the process lives until Stop. It runs in its own process group.
func StartServer(ctx context.Context, opts ServerOptions) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("start victoria-metrics: DataDir is required")
	}
	if opts.Bin == "" {
		bin, err := FindBinary()
		if err != nil {
			return nil, fmt.Errorf("start victoria-metrics: %w", err)
		}
		opts.Bin = bin
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("start victoria-metrics: %w", err)
	}
	scrapeConfig := opts.ScrapeConfigPath
	if scrapeConfig != "" && opts.ScrapeInterval > 0 {
		var err error
		if scrapeConfig, err = withScrapeInterval(scrapeConfig, opts.ScrapeInterval, opts.DataDir); err != nil {
			return nil, fmt.Errorf("start victoria-metrics: %w", err)
		}
	}

	// A port found free can be taken before the process binds it: try a
	// few times.
	var lastErr error
	for range 3 {
		s, err := startOnce(ctx, opts, scrapeConfig)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startOnce(ctx context.Context, opts ServerOptions, scrapeConfig string) (*Server, error) {
	addr := opts.Addr
	if addr == "" {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start victoria-metrics: %w", err)
		}
		addr = "127.0.0.1:" + strconv.Itoa(port)
	}
	args := []string{
		"-httpListenAddr=" + addr,
		"-storageDataPath=" + opts.DataDir,
		"-retentionPeriod=100y",
		"-search.latencyOffset=0s",
		"-search.disableCache",
		"-loggerLevel=WARN",
	}
	if scrapeConfig != "" {
		args = append(args, "-promscrape.config="+scrapeConfig)
	}
	cmd := exec.Command(opts.Bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start victoria-metrics %s: %w", opts.Bin, err)
	}
	s := &Server{cmd: cmd, url: "http://" + addr, done: make(chan struct{}), log: opts.Logger, out: out}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	opts.Logger.DebugContext(ctx, "victoria-metrics started", "pid", cmd.Process.Pid, "url", s.url)

	if err := s.waitHealthy(ctx, opts.StartTimeout); err != nil {
		s.Stop()
		return nil, fmt.Errorf("start victoria-metrics on %s: %w; output: %s", addr, err, out.String())
	}
	return s, nil
}

// waitHealthy polls /health until it answers 200, the process exits, ctx
// is cancelled or timeout passes.
func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/health", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("process exited: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for /health: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// URL returns the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.url }

// Stop sends SIGTERM to the server's process group, waits up to 10 seconds,
// then kills the group, and waits for the exit. It is safe to call twice.
func (s *Server) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.log.Warn("victoria-metrics did not stop on SIGTERM, killing it", "pid", pgid)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
		var exitErr *exec.ExitError
		if s.waitErr != nil && !errors.As(s.waitErr, &exitErr) {
			err = fmt.Errorf("stop victoria-metrics: %w", s.waitErr)
		}
	})
	return err
}

// Flush makes everything the server has ingested searchable now
// (/internal/force_flush) rather than after its periodic flush. Cancelling
// ctx aborts it.
func (s *Server) Flush(ctx context.Context) error {
	if err := post(ctx, s.url+"/internal/force_flush", nil); err != nil {
		return fmt.Errorf("flush victoria-metrics: %w", err)
	}
	return nil
}

// Import posts export-format data (plain or gzip, see ReadRecording) to
// baseURL's /api/v1/import, then asks the server to flush so that the data
// is searchable at once (/internal/force_flush) and drops its response
// cache (/internal/resetRollupResultCache). Cancelling ctx aborts it.
func Import(ctx context.Context, baseURL string, r io.Reader) error {
	base := strings.TrimSuffix(baseURL, "/")
	rec, err := ReadRecording(r) // accepts gzip; re-encoded below as plain lines
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		var line []byte
		var werr error
		for _, s := range rec.Series {
			line = appendSeriesLine(line[:0], s)
			if _, werr = pw.Write(line); werr != nil {
				break
			}
		}
		pw.CloseWithError(werr)
	}()
	if err := post(ctx, base+"/api/v1/import", pr); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("import: %w", err)
	}
	if err := post(ctx, base+"/internal/force_flush", nil); err != nil {
		return fmt.Errorf("import: flush: %w", err)
	}
	if err := post(ctx, base+"/internal/resetRollupResultCache", nil); err != nil {
		return fmt.Errorf("import: reset cache: %w", err)
	}
	return nil
}

func post(ctx context.Context, u string, body io.Reader) error {
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, req.URL.Redacted(), resp.Status, strings.TrimSpace(string(msg)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// appendSeriesLine appends s as one export-format line, all labels kept.
func appendSeriesLine(b []byte, s *Series) []byte {
	b = append(b, `{"metric":{`...)
	first := true
	for _, k := range sortedLabelNames(s.Labels) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendQuote(b, k)
		b = append(b, ':')
		b = strconv.AppendQuote(b, s.Labels[k])
	}
	b = append(b, `},"values":[`...)
	for i, v := range s.Values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendExportValue(b, v)
	}
	b = append(b, `],"timestamps":[`...)
	for i, t := range s.Timestamps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	return append(b, "]}\n"...)
}

// withScrapeInterval writes a copy of the scrape config at path into dir
// with global.scrape_interval set to every, and returns the copy's path.
func withScrapeInterval(path string, every time.Duration, dir string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("scrape config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("scrape config %s: %w", path, err)
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
	}
	global["scrape_interval"] = every.String()
	cfg["global"] = global
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("scrape config %s: %w", path, err)
	}
	copyPath := filepath.Join(dir, "rollguard-scrape.yml")
	if err := os.WriteFile(copyPath, out, 0o644); err != nil {
		return "", fmt.Errorf("scrape config: %w", err)
	}
	return copyPath, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
