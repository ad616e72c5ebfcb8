package ansible

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A master connection exits some time after `ssh -O exit` returns (it
// closes its connection first): stopControlMasters returns only once it
// has. The master here is this test binary (TestHelperControlMaster),
// which holds its socket and takes 300 ms to exit after the exit
// request; ssh is a script that answers -O check with the master's pid as
// OpenSSH does and passes -O exit on as SIGTERM.
func TestStopControlMastersWaitsForTheMaster(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "cp", "c7aef983df")
	if err := os.Mkdir(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fake := `#!/bin/sh
# ssh -S <socket> -O <command> <host>
pid=$(cat "$2.pid")
case "$4" in
check) printf 'Master running (pid=%s)\r\n' "$pid" >&2 ;;
exit) kill -TERM "$pid" && printf 'Exit request sent.\r\n' >&2 ;;
*) exit 255 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	master := exec.Command(os.Args[0], "-test.run=^TestHelperControlMaster$")
	master.Env = append(os.Environ(), "ROLLGUARD_FAKE_MASTER_SOCKET="+sock)
	out, err := master.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		master.Process.Kill()
		master.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "listening\n" {
		t.Fatalf("the master did not start: %q %v", line, err)
	}
	if err := os.WriteFile(sock+".pid", []byte(strconv.Itoa(master.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}

	stopControlMasters(t.Context(), filepath.Dir(sock), slog.New(slog.DiscardHandler))

	var status unix.WaitStatus
	pid, err := unix.Wait4(master.Process.Pid, &status, unix.WNOHANG, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pid == 0 {
		t.Fatal("stopControlMasters returned while the master connection was still running")
	}
	if !status.Exited() || status.ExitStatus() != 0 {
		t.Errorf("the master ended with %v, want it to exit on the exit request", status)
	}
}

// TestHelperControlMaster is TestStopControlMastersWaitsForTheMaster's
// master connection: it listens on its socket, says so, and on SIGTERM
// (the exit request) exits 300 ms later.
func TestHelperControlMaster(t *testing.T) {
	sock := os.Getenv("ROLLGUARD_FAKE_MASTER_SOCKET")
	if sock == "" {
		t.Skip("a helper of TestStopControlMastersWaitsForTheMaster")
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	io.WriteString(os.Stdout, "listening\n")
	<-term
	time.Sleep(300 * time.Millisecond) // closing the host's connection
	os.Exit(0)
}
