package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestGeneratedRegistrationWorksWithDendrite runs the operator's path with
// the real binary: `bridge -g` writes the registration, Dendrite starts with
// it, the bridge starts, and the bot exists with its displayname.
func TestGeneratedRegistrationWorksWithDendrite(t *testing.T) {
	bin := buildBridge(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	regPath := filepath.Join(dir, "registration.yaml")
	example, err := exec.Command(bin, "-e").Output()
	if err != nil {
		t.Fatalf("bridge -e: %v", err)
	}
	asPort, metricsPort := tesths.FreePort(t), tesths.FreePort(t)
	db := testdb.SQLite(t)
	cfgText := string(example)
	for old, repl := range map[string]string{
		"http://127.0.0.1:29333":             fmt.Sprintf("http://127.0.0.1:%d", asPort),
		"port: 29333":                        fmt.Sprintf("port: %d", asPort),
		"listen: 127.0.0.1:29334":            fmt.Sprintf("listen: 127.0.0.1:%d", tesths.FreePort(t)),
		"file:dmbridge.db?_txlock=immediate": db.URI,
		`listen: ""`:                         fmt.Sprintf("listen: 127.0.0.1:%d", metricsPort),
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("example config has no %q", old)
		}
		cfgText = strings.Replace(cfgText, old, repl, 1)
	}
	if err = os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-g", "-c", cfgPath, "-r", regPath).CombinedOutput(); err != nil {
		t.Fatalf("bridge -g: %v\n%s", err, out)
	}
	reg, err := mas.LoadRegistration(regPath)
	if err != nil {
		t.Fatalf("load generated registration: %v", err)
	}
	hs := tesths.Start(t, reg)
	data, _ := os.ReadFile(cfgPath)
	cfgText = strings.Replace(string(data), "http://127.0.0.1:8008", hs.URL, 1)
	if err = os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfgPath)
	cmd.Env = append(os.Environ(), "DMBRIDGE_CONNECTOR_TOKEN=token-from-env-0123456789abcdef0123")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err = cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	})
	anon, err := mautrix.NewClient(hs.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	bot := hs.UserID(reg.SenderLocalpart)
	tesths.WaitFor(t, 20*time.Second, "the bot's displayname", func() (bool, error) {
		profile, err := anon.GetProfile(context.Background(), bot)
		if err != nil {
			return false, nil
		}
		return profile.DisplayName == "DM bridge bot", nil
	})
	asBot, err := mautrix.NewClient(hs.URL, bot, reg.AppToken)
	if err != nil {
		t.Fatal(err)
	}
	who, err := asBot.Whoami(context.Background())
	if err != nil || who.UserID != bot {
		t.Fatalf("whoami with the generated as_token: %+v, %v", who, err)
	}
	// The operator's probes and metrics answer.
	for _, u := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/_dmbridge/ready", asPort),
		fmt.Sprintf("http://127.0.0.1:%d/_dmbridge/health", asPort),
		fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
	} {
		resp, body := httpGet(t, u)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s\n%s", u, resp.Status, body)
		}
		if strings.HasSuffix(u, "/metrics") && !strings.Contains(string(body), "dmbridge_database_up 1") {
			t.Errorf("GET %s lacks dmbridge_database_up 1:\n%s", u, body)
		}
	}
	// SIGTERM stops it cleanly: exit status 0.
	if err = cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-exited:
		if err != nil {
			t.Errorf("bridge exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("bridge still running 30 s after SIGTERM")
	}
}
