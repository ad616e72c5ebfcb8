package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// amNotification is the part of Alertmanager's webhook payload we check.
type amNotification struct {
	Status string `json:"status"`
	Alerts []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// startAlertmanager runs the real Alertmanager on a free port, routing
// every alert to receiverURL, and returns its base URL once it is ready.
func startAlertmanager(t *testing.T, receiverURL string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		bin, err = exec.LookPath("alertmanager")
	}
	if err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatal("prometheus-alertmanager is not installed (ROLLGUARD_E2E=1); run ci/install-deps.sh")
		}
		t.Skip("prometheus-alertmanager is not installed; set ROLLGUARD_E2E=1 to make this a failure")
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, rollout]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, receiverURL)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no clustering: no gossip port, no settle wait
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited before it was ready: %v\n%s", err, logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready after 30s\n%s", logs.String())
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitNotification returns the first notification with the given status.
func waitNotification(t *testing.T, ch <-chan amNotification, status string) amNotification {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n := <-ch:
			t.Logf("%s notification: %+v", time.Now().Format("15:04:05.000"), n)
			if n.Status == status {
				return n
			}
		case <-timeout:
			t.Fatalf("no %s notification from alertmanager within 30s", status)
		}
	}
}

func TestAlertmanagerEndToEnd(t *testing.T) {
	notes := make(chan amNotification, 16)
	var mu sync.Mutex
	var bad []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n amNotification
		if err := json.Unmarshal(body, &n); err != nil {
			mu.Lock()
			bad = append(bad, string(body))
			mu.Unlock()
			return
		}
		notes <- n
	}))
	defer receiver.Close()
	base := startAlertmanager(t, receiver.URL+"/hook")

	al, err := New([]AlertConfig{{Type: TypeAlertmanager, URL: base}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := rollbackAlert()
	a.At = time.Now().Add(-time.Second) // Alertmanager drops alerts that ended in the past; these start now
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := al.Send(ctx, a); err != nil {
		t.Fatalf("send to alertmanager: %v", err)
	}

	// The API lists it, with our labels.
	resp, err := http.Get(base + "/api/v2/alerts?filter=rollout%3D%22web-nginx%22")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var listed []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Status      struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v", err)
	}
	if len(listed) != 1 {
		t.Fatalf("alertmanager lists %d alerts for the rollout, want 1: %+v", len(listed), listed)
	}
	wantLabels := map[string]string{"alertname": "RollguardRollback", "rollout": "web-nginx", "wave": "canary", "severity": "critical"}
	if fmt.Sprint(listed[0].Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v, want %v", listed[0].Labels, wantLabels)
	}
	if s := listed[0].Annotations["summary"]; s != "rollout web-nginx rolled back in wave canary (2 hosts)" {
		t.Errorf("summary annotation %q", s)
	}
	if listed[0].Status.State != "active" {
		t.Errorf("state %q, want active", listed[0].Status.State)
	}

	// Alertmanager routes it to the receiver...
	n := waitNotification(t, notes, "firing")
	if len(n.Alerts) != 1 || n.Alerts[0].Labels["alertname"] != "RollguardRollback" || n.Alerts[0].Labels["wave"] != "canary" {
		t.Errorf("firing notification %+v", n)
	}
	// ...and a resolution ends it.
	a.Resolved, a.At = true, time.Now()
	if err := al.Send(ctx, a); err != nil {
		t.Fatalf("send resolution to alertmanager: %v", err)
	}
	n = waitNotification(t, notes, "resolved")
	if len(n.Alerts) != 1 || n.Alerts[0].Status != "resolved" || n.Alerts[0].Labels["alertname"] != "RollguardRollback" {
		t.Errorf("resolved notification %+v", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("the receiver got bodies it could not decode: %q", bad)
	}
}
