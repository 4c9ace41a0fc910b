package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/devstack"
)

const testVersion = "9.9.9-test"

// TestBinary builds the real command once and drives it as a user would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	build := exec.Command("go", "build", "-tags=goolm", "-o", bin, "-ldflags", "-X main.version="+testVersion, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("example config", func(t *testing.T) {
		for _, flag := range []string{"-e", "--example-config"} {
			stdout, stderr, code := runBinary(t, t.TempDir(), bin, flag)
			if code != 0 || stdout != string(config.ExampleConfig()) {
				t.Errorf("%s: exit %d, stderr %q, stdout differs from the example: %v", flag, code, stderr, stdout != string(config.ExampleConfig()))
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		stdout, _, code := runBinary(t, t.TempDir(), bin, "--version")
		if code != 0 || stdout != "dmbridge "+testVersion+"\n" {
			t.Errorf("--version: exit %d, %q", code, stdout)
		}
	})

	t.Run("bad config", func(t *testing.T) {
		dir := t.TempDir()
		src := strings.Replace(string(config.ExampleConfig()), "  port: 29333", `  port: "abc"`, 1)
		writeFile(t, filepath.Join(dir, "config.yaml"), src, 0o600)
		stdout, stderr, code := runBinary(t, dir, bin, "-c", "config.yaml")
		if code == 0 {
			t.Fatal("exit 0 for a bad config")
		}
		want := `config.yaml: appservice.port: wrong type: want an integer, got "abc" (line `
		if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
			t.Errorf("want one line starting %q, got stdout %q stderr %q", want, stdout, stderr)
		}
	})

	t.Run("missing tokens", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "my.yaml"), string(config.ExampleConfig()), 0o600)
		_, stderr, code := runBinary(t, dir, bin, "--config", "my.yaml")
		want := "my.yaml: appservice.as_token: empty; run the bridge with -g first"
		if code == 0 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want one line starting %q", code, stderr, want)
		}
	})

	t.Run("missing config file", func(t *testing.T) {
		_, stderr, code := runBinary(t, t.TempDir(), bin)
		if code == 0 || !strings.HasPrefix(stderr, "config.yaml: cannot read config") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("generate registration", func(t *testing.T) {
		for _, args := range [][]string{
			{"-g", "-c", "config.yaml", "-r", "registration.yaml"},
			{"--generate-registration", "--config", "config.yaml", "--registration", "registration.yaml"},
		} {
			testGenerate(t, bin, args)
		}
	})

	t.Run("generate refuses tokens from the environment", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.yaml"), string(config.ExampleConfig()), 0o644)
		_, stderr, code := runBinary(t, dir, bin, "-g", "DMBRIDGE_AS_TOKEN=x")
		if code == 0 || !strings.Contains(stderr, "DMBRIDGE_AS_TOKEN") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "registration.yaml")); err == nil {
			t.Error("registration written although the tokens could not be saved")
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		if _, _, code := runBinary(t, t.TempDir(), bin, "--no-such-flag"); code != 2 {
			t.Errorf("unknown flag: exit %d, want 2", code)
		}
		if _, _, code := runBinary(t, t.TempDir(), bin, "stray"); code != 2 {
			t.Errorf("stray argument: exit %d, want 2", code)
		}
		if _, stderr, code := runBinary(t, t.TempDir(), bin, "-h"); code != 0 || !strings.Contains(stderr, "--generate-registration") {
			t.Errorf("-h: exit %d, %q", code, stderr)
		}
	})
}

func testGenerate(t *testing.T, bin string, args []string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	regPath := filepath.Join(dir, "registration.yaml")
	example := string(config.ExampleConfig())
	writeFile(t, cfgPath, example, 0o644)

	stdout, stderr, code := runBinary(t, dir, bin, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\nstdout %s\nstderr %s", args, code, stdout, stderr)
	}
	info, err := os.Stat(regPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("registration mode %v, want 0600", info.Mode().Perm())
	}
	reg, err := appservice.LoadRegistration(regPath)
	if err != nil {
		t.Fatalf("registration does not parse: %v", err)
	}
	if reg.ID != "dmbridge" || reg.SenderLocalpart != "dmbridgebot" || len(reg.AppToken) < 32 {
		t.Errorf("registration: %+v", reg)
	}

	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(example, `  as_token: ""`, `  as_token: "`+reg.AppToken+`"`, 1)
	want = strings.Replace(want, `  hs_token: ""`, `  hs_token: "`+reg.ServerToken+`"`, 1)
	// -g also generates the key that encrypts the stored Olm/Megolm keys.
	var pickleKey string
	if _, after, ok := strings.Cut(string(data), `  pickle_key: "`); ok {
		pickleKey, _, _ = strings.Cut(after, `"`)
	}
	want = strings.Replace(want, `  pickle_key: ""`, `  pickle_key: "`+pickleKey+`"`, 1)
	if string(data) != want || len(pickleKey) < 40 {
		t.Errorf("config should only gain the tokens and the pickle key, comments and all else kept; got:\n%s", data)
	}
	if info, err := os.Stat(cfgPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config mode after -g: %v %v, want 0600", info.Mode().Perm(), err)
	}
	cfg, _, err := config.LoadForRegistration(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Appservice.ASToken != reg.AppToken || cfg.Appservice.HSToken != reg.ServerToken {
		t.Error("tokens in the config do not match the registration")
	}
	if cfg.Encryption.PickleKey != pickleKey {
		t.Errorf("pickle key loaded as %q, want %q", cfg.Encryption.PickleKey, pickleKey)
	}
}

// runBinary runs bin in dir; arguments of the form NAME=value (upper case)
// become environment variables instead.
func runBinary(t *testing.T, dir, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// Without the bridge's own variables, the developer's environment
	// cannot change the outcome.
	env := devstack.BridgeEnv()
	var flags []string
	for _, a := range args {
		if name, _, ok := strings.Cut(a, "="); ok && name == strings.ToUpper(name) && !strings.HasPrefix(a, "-") {
			env = append(env, a)
		} else {
			flags = append(flags, a)
		}
	}
	cmd := exec.Command(bin, flags...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("running %s: %v", bin, err)
	}
	return out.String(), errOut.String(), code
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
