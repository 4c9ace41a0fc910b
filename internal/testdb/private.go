//go:build linux

package testdb

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/devstack"
)

// PrivateServer is a PostgreSQL server of the test's own, so that crashing
// or restarting it disturbs nobody else (the shared server on 5432 serves
// every other test). It runs as the postgres user, as the server refuses
// to run as root, and is removed when the test ends.
type PrivateServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cred *syscall.Credential
	// settings are "name=value" server settings given at every start.
	settings []string
}

// pgBinDir finds the server binaries (initdb is not on PATH on Debian).
func pgBinDir(t testing.TB) string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real)
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Fatal("initdb not found: install the postgresql server package")
	}
	return filepath.Dir(matches[len(matches)-1])
}

// StartPrivate initialises and starts a private server with a database
// named dmbridge; settings ("name=value") are passed to every start. It
// skips under -short.
func StartPrivate(t testing.TB, settings ...string) *PrivateServer {
	t.Helper()
	SkipShort(t, "a private PostgreSQL server")
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("a postgres system user is needed to run a private server: %v", err)
	}
	dir, err := os.MkdirTemp("", "dmbridge-pg-")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	if err = os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg := &PrivateServer{t: t, bin: pgBinDir(t), dir: dir, port: port,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, settings: settings}
	t.Cleanup(func() {
		_ = pg.run("pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	})
	if err = pg.run("initdb", "-D", pg.data(), "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	pg.start()
	if err = pg.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", "postgres", "dmbridge"); err != nil {
		t.Fatal(err)
	}
	return pg
}

func (pg *PrivateServer) data() string { return filepath.Join(pg.dir, "data") }

// run runs one of the server's programs as the postgres user.
func (pg *PrivateServer) run(prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(pg.bin, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	cmd.Dir = pg.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", prog, args, err, out)
	}
	return nil
}

func (pg *PrivateServer) start() {
	pg.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", pg.port, pg.dir)
	for _, s := range pg.settings {
		opts += " -c " + s
	}
	if err := pg.run("pg_ctl", "-D", pg.data(), "-o", opts, "-l", filepath.Join(pg.dir, "server.log"), "-w", "start"); err != nil {
		pg.t.Fatal(err)
	}
}

// Restart stops the server (fast: sessions are cut, the log is flushed),
// keeps it down for a moment, and starts it again.
func (pg *PrivateServer) Restart(down time.Duration) { pg.RestartWith("fast", down) }

// Crash is Restart with the server crashing: pg_ctl's immediate mode (no
// checkpoint; what was committed without its WAL flush is lost, and
// recovery replays the log at the start).
func (pg *PrivateServer) Crash(down time.Duration) { pg.RestartWith("immediate", down) }

// RestartWith is Restart with pg_ctl's shutdown mode ("fast", "immediate").
func (pg *PrivateServer) RestartWith(mode string, down time.Duration) {
	pg.t.Helper()
	if err := pg.run("pg_ctl", "-D", pg.data(), "-m", mode, "-w", "stop"); err != nil {
		pg.t.Fatal(err)
	}
	time.Sleep(down)
	pg.start()
}

// Target is the server's dmbridge database.
func (pg *PrivateServer) Target() Target {
	return Target{Name: "private-postgres", Type: TypePostgres,
		URI: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/dmbridge?sslmode=disable", pg.port)}
}
