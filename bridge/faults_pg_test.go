//go:build linux

package bridge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// privatePG is a PostgreSQL server of the test's own, so that restarting it
// disturbs nobody else. It runs as the postgres user, as the server refuses
// to run as root.
type privatePG struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cred *syscall.Credential
}

// pgBinDir finds the server binaries (initdb is not on PATH on Debian).
func pgBinDir(t *testing.T) string {
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

func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	testdb.SkipShort(t, "a private PostgreSQL server")
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
	pg := &privatePG{t: t, bin: pgBinDir(t), dir: dir, port: tesths.FreePort(t),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
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

func (pg *privatePG) data() string { return filepath.Join(pg.dir, "data") }

// run runs one of the server's programs as the postgres user.
func (pg *privatePG) run(prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(pg.bin, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	cmd.Dir = pg.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", prog, args, err, out)
	}
	return nil
}

func (pg *privatePG) start() {
	pg.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", pg.port, pg.dir)
	if err := pg.run("pg_ctl", "-D", pg.data(), "-o", opts, "-l", filepath.Join(pg.dir, "server.log"), "-w", "start"); err != nil {
		pg.t.Fatal(err)
	}
}

// restart stops the server (fast: sessions are cut), keeps it down for a
// moment, and starts it again.
func (pg *privatePG) restart(down time.Duration) { pg.restartWith("fast", down) }

// restartWith is restart with pg_ctl's shutdown mode: "immediate" is a
// crash (no checkpoint; what was committed without its WAL flush is lost,
// and recovery replays the log at the start).
func (pg *privatePG) restartWith(mode string, down time.Duration) {
	pg.t.Helper()
	if err := pg.run("pg_ctl", "-D", pg.data(), "-m", mode, "-w", "stop"); err != nil {
		pg.t.Fatal(err)
	}
	time.Sleep(down)
	pg.start()
}

func (pg *privatePG) target() testdb.Target {
	return testdb.Target{Name: "private-postgres", Type: testdb.TypePostgres,
		URI: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/dmbridge?sslmode=disable", pg.port)}
}

// TestFaultPostgresRestarts restarts the bridge's PostgreSQL server twice
// while messages stream both ways: every remote message shows once in the
// room, every reply reaches the network once.
func TestFaultPostgresRestarts(t *testing.T) { postgresRestarts(t, "fast") }

// TestFaultPostgresCrashes is TestFaultPostgresRestarts with the server
// crashing (pg_ctl -m immediate) instead: a lone in-doubt marker commits
// without waiting for its WAL flush (database/indoubt.go), so a crash can
// lose one whose send went out; the event is applied again and its resend
// under the same transaction id must not show twice.
func TestFaultPostgresCrashes(t *testing.T) { postgresRestarts(t, "immediate") }

func postgresRestarts(t *testing.T, mode string) {
	remote, replies := faultSize(60, 600), faultSize(10, 100)
	pg := startPrivatePG(t)
	s := newStack(t, pg.target())
	f := s.connectFake(sdk.NewMemoryStore())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pace := 50 * time.Millisecond
	stream, roomID := s.startStream(ctx, t, f, "remote", pace, remote, remote)
	s.waitMessage(roomID, "first")
	replyStream := s.sendReplies(ctx, t, roomID, replies, func() time.Duration { return time.Duration(remote) * pace / time.Duration(replies) })
	// Two restarts, a third and two thirds of the way through the stream.
	third := time.Duration(remote) * pace / 3
	for i := 0; i < 2; i++ {
		time.Sleep(third)
		pg.restartWith(mode, time.Duration(faultSize(2, 5))*time.Second)
		t.Logf("PostgreSQL restarted (%s, %d)", mode, i+1)
	}
	sent := stream.finish(ctx, t)
	toNetwork := replyStream.wait(t, f)
	sent = append(sent, sortedKeys(toNetwork)...)
	tally("postgres restarts ("+mode+") x2: replies at the connector", "postgres (private)", sortedKeys(toNetwork), toNetwork).check(t)
	got := s.waitTimeline(t, roomID, sent, 3*time.Minute)
	r := tally("postgres restarts ("+mode+") x2: room timeline", "postgres (private)", sent, got)
	r.check(t)
	s.explainMissing(t, roomID, r)
}
