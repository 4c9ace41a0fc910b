package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/conformance"
)

// helperEnv makes the test binary run as an external connector process,
// so the CLI is tested the way third parties use it: -start-cmd and
// -produce-cmd, across a process boundary.
const helperEnv = "CONNECTOR_CONFORMANCE_HELPER"

func TestMain(m *testing.M) {
	if file := os.Getenv(helperEnv); file != "" {
		os.Exit(helperConnector(file))
	}
	os.Exit(m.Run())
}

// helperConnector runs the SDK target until SIGTERM; every line appended
// to file is a number of events to produce.
func helperConnector(file string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	target := conformance.NewSDKTarget()
	if err := target.Start(ctx, os.Getenv("DMBRIDGE_CONNECTOR_URL"), os.Getenv("DMBRIDGE_CONNECTOR_TOKEN")); err != nil {
		return 1
	}
	done := 0
	for ctx.Err() == nil {
		lines := readLines(file)
		for _, l := range lines[min(done, len(lines)):] {
			n, _ := strconv.Atoi(l)
			_ = target.Produce(ctx, n)
		}
		done = max(done, len(lines))
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	_ = target.Stop(context.Background())
	return 0
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		out = append(out, sc.Text())
	}
	return out
}

func TestExternalConnector(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	produce := filepath.Join(t.TempDir(), "produce")
	var out bytes.Buffer
	code := run(t.Context(), []string{
		"-listen", "127.0.0.1:0", "-timeout", "5s", "-quiet", "100ms",
		"-chat", "bob@fake.invalid",
		"-start-cmd", helperEnv + "=" + produce + " exec '" + exe + "'",
		"-produce-cmd", "echo {n} >> '" + produce + "'",
		// The helper's store dies with its process, and the SDK bug that
		// acked-seq-ahead finds is covered by the connector/sdk package.
		"-skip", conformance.CheckReplayRestart + "," + conformance.CheckAckedSeqAhead,
	}, &out, &out)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	for _, want := range []string{"PASS hello", "PASS replay-reconnect", "PASS max-in-flight", "PASS txn-repeat", "13 passed, 0 failed, 3 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestSelfTestFlagAndExitCode(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	code := run(t.Context(), []string{"-self-test", "-listen", "127.0.0.1:0", "-timeout", "2s", "-quiet", "50ms",
		"-skip", strings.Join(conformance.Checks()[2:], ",")}, &out, &out)
	if code != 0 || !strings.Contains(out.String(), "2 passed, 0 failed") {
		t.Fatalf("exit code %d, output:\n%s", code, out.String())
	}
	for _, args := range [][]string{{"-no-such-flag"}, {"-skip", "no-such-check"}} {
		if code := run(t.Context(), args, &out, &out); code != 2 {
			t.Errorf("%q: exit code %d, want 2", args, code)
		}
	}
}
