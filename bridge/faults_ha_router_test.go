package bridge_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/tesths"
)

// haRouter stands in for the load balancer in front of a high-availability
// pair: it forwards each new TCP connection, on its appservice port and its
// connector port alike, to the instance whose /_dmbridge/ready answers 200,
// and refuses the connection while none does (the homeserver and the
// connector retry).
type haRouter struct {
	t         *testing.T
	instances []*haInstance
	client    http.Client
}

func newHARouter(t *testing.T, asAddr, connAddr string, instances []*haInstance) *haRouter {
	r := &haRouter{t: t, instances: instances, client: http.Client{Timeout: time.Second}}
	r.listen(asAddr, func(i *haInstance) string { return i.asAddr })
	r.listen(connAddr, func(i *haInstance) string { return i.connAddr })
	return r
}

func (r *haRouter) listen(addr string, backend func(*haInstance) string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go r.forward(conn, backend)
		}
	}()
}

func (r *haRouter) forward(conn net.Conn, backend func(*haInstance) string) {
	defer conn.Close()
	active := r.active()
	if active == nil {
		return
	}
	up, err := net.Dial("tcp", backend(active))
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(countingWriter{conn, active}, up); done <- struct{}{} }()
	<-done
}

// countingWriter counts the bytes an instance sent to the homeserver's
// pushes and to the connectors (answers, acks, commands), and keeps the
// first of them once recordServed was called.
type countingWriter struct {
	w io.Writer
	i *haInstance
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.i.served.Add(int64(n))
	c.i.mu.Lock()
	if c.i.recording && len(c.i.servedAfter) < 4096 {
		c.i.servedAfter = append(c.i.servedAfter, p[:min(n, 4096-len(c.i.servedAfter))]...)
	}
	c.i.mu.Unlock()
	return n, err
}

// recordServed starts keeping what the instance sends through the router,
// so that a test can show bytes it should not have sent.
func (i *haInstance) recordServed() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.recording, i.servedAfter = true, nil
}

// recorded is what the instance sent through the router since recordServed.
func (i *haInstance) recorded() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return string(i.servedAfter)
}

// newCountingProxy forwards instance i's requests to the homeserver and
// counts them: each instance has its own, so a test sees what one instance
// sent. Armed by holdSend, it lets the next message send land in the
// homeserver but keeps the answer from the instance until it goes away.
func newCountingProxy(t *testing.T, target string, i *haInstance) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.hsRequests.Add(1)
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/send/m.room.message/") {
			i.mu.Lock()
			held := i.held
			i.held = nil
			i.mu.Unlock()
			if held != nil {
				rp.ServeHTTP(httptest.NewRecorder(), r)
				close(held)
				<-r.Context().Done()
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// holdSend arms the proxy (see newCountingProxy); the channel is closed
// once a send has landed and its answer is being held back.
func (i *haInstance) holdSend() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.held = make(chan struct{})
	return i.held
}

// active is the instance whose ready probe answers 200, or nil.
func (r *haRouter) active() *haInstance {
	for _, i := range r.instances {
		if i.ready(&r.client) {
			return i
		}
	}
	return nil
}

// haInstance is one bridge process of the pair, on its own ports.
type haInstance struct {
	t        *testing.T
	name     string
	binary   string
	config   string
	asPort   int
	asAddr   string
	connAddr string
	logDir   string
	env      []string
	// hsRequests counts the requests this instance sent to the homeserver
	// (through its own proxy); served counts the bytes it sent through
	// the router.
	hsRequests, served atomic.Int64

	mu     sync.Mutex
	cmd    *exec.Cmd
	runs   int
	exited chan struct{}
	status int
	// held, when set, makes the proxy hold the next message send's answer.
	held chan struct{}
	// servedAfter is the start of what the instance sent through the
	// router since recordServed.
	recording   bool
	servedAfter []byte
}

// newHAInstance prepares an instance; writeConfig writes its config, given
// the address of the homeserver proxy the instance is to use.
func newHAInstance(t *testing.T, name, binary, hsTarget string, writeConfig func(hsAddress string) string, env ...string) *haInstance {
	port := tesths.FreePort(t)
	i := &haInstance{t: t, name: name, binary: binary, asPort: port,
		asAddr:   "127.0.0.1:" + strconv.Itoa(port),
		connAddr: fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t)), logDir: t.TempDir(), env: env}
	// The proxy is registered before the kill, so it closes after it.
	i.config = writeConfig(newCountingProxy(t, hsTarget, i))
	t.Cleanup(i.kill)
	t.Cleanup(func() {
		if t.Failed() {
			for run := 1; run <= i.runs; run++ {
				data, _ := os.ReadFile(i.logPath(run))
				t.Logf("%s run %d log:\n%s", name, run, tail(string(data), 120))
			}
		}
	})
	return i
}

func (i *haInstance) logPath(run int) string {
	return filepath.Join(i.logDir, fmt.Sprintf("%s-%d.log", i.name, run))
}

// start runs the binary and waits until it listens (as a standby or the
// active).
func (i *haInstance) start() {
	i.t.Helper()
	if err := i.spawn(); err != nil {
		i.t.Fatal(err)
	}
	tesths.WaitFor(i.t, 30*time.Second, i.name+" listening", func() (bool, error) {
		conn, err := net.Dial("tcp", i.asAddr)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
}

// supervise restarts the process whenever it exits by itself, as systemd's
// Restart=always would, until stop is closed.
func (i *haInstance) supervise(stop <-chan struct{}) {
	for {
		i.mu.Lock()
		exited := i.exited
		i.mu.Unlock()
		select {
		case <-stop:
			return
		case <-exited:
		}
		select {
		case <-stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
		if err := i.spawn(); err != nil {
			return
		}
	}
}

// spawn starts the binary without waiting for it.
func (i *haInstance) spawn() error {
	i.mu.Lock()
	i.runs++
	logFile, err := os.Create(i.logPath(i.runs))
	if err != nil {
		i.mu.Unlock()
		return err
	}
	cmd := exec.Command(i.binary, "-c", i.config)
	cmd.Env = append(os.Environ(),
		"DMBRIDGE_APPSERVICE_PORT="+strconv.Itoa(i.asPort),
		"DMBRIDGE_CONNECTOR_LISTEN="+i.connAddr)
	cmd.Env = append(cmd.Env, i.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err = cmd.Start(); err != nil {
		i.mu.Unlock()
		return err
	}
	exited := make(chan struct{})
	i.cmd, i.exited = cmd, exited
	i.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		i.mu.Lock()
		i.status = cmd.ProcessState.ExitCode()
		i.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (i *haInstance) ready(c *http.Client) bool {
	resp, err := c.Get("http://" + i.asAddr + "/_dmbridge/ready")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (i *haInstance) signal(sig syscall.Signal) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd != nil && i.cmd.Process != nil {
		_ = i.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (i *haInstance) kill() {
	i.mu.Lock()
	cmd, exited := i.cmd, i.exited
	i.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exited
}

// waitExit waits for the process to end by itself and returns its status.
func (i *haInstance) waitExit(timeout time.Duration) (int, bool) {
	i.mu.Lock()
	exited := i.exited
	i.mu.Unlock()
	select {
	case <-exited:
		i.mu.Lock()
		defer i.mu.Unlock()
		return i.status, true
	case <-time.After(timeout):
		return 0, false
	}
}

func (i *haInstance) log(run int) string {
	data, _ := os.ReadFile(i.logPath(run))
	return string(data)
}

func (i *haInstance) runCount() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runs
}

func (i *haInstance) countLogs(text string) int {
	n := 0
	for run := 1; run <= i.runCount(); run++ {
		n += strings.Count(i.log(run), text)
	}
	return n
}
