package config

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"maunium.net/go/mautrix/appservice"
)

var update = flag.Bool("update", false, "rewrite ../registration.yaml.example from the example config")

func TestGenerateRegistration(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	reg := cfg.GenerateRegistration()
	if len(reg.AppToken) < 32 || len(reg.ServerToken) < 32 || reg.AppToken == reg.ServerToken {
		t.Fatalf("weak or equal tokens: %q %q", reg.AppToken, reg.ServerToken)
	}
	if cfg.Appservice.ASToken != reg.AppToken || cfg.Appservice.HSToken != reg.ServerToken {
		t.Error("tokens were not stored back into the config")
	}
	if again := cfg.GenerateRegistration(); again.AppToken == reg.AppToken {
		t.Error("tokens are not fresh on each call")
	}
	if reg.ID != "dmbridge" || reg.URL != "http://127.0.0.1:29333" || reg.SenderLocalpart != "dmbridgebot" {
		t.Errorf("identity: %+v", reg)
	}
	if reg.RateLimited == nil || *reg.RateLimited {
		t.Error("rate_limited should be explicitly false")
	}
	if !reg.EphemeralEvents || !reg.SoruEphemeralEvents {
		t.Error("ephemeral events should be on by default")
	}
	ns := reg.Namespaces.UserIDs
	if len(ns) != 2 || ns[0].Regex != `^@dm_.+:localhost$` || ns[1].Regex != `^@dmbridgebot:localhost$` || !ns[0].Exclusive || !ns[1].Exclusive {
		t.Errorf("user namespaces: %+v", ns)
	}

	cfg.Appservice.EphemeralEvents = false
	cfg.Homeserver.Domain = "example.org"
	cfg.Ghosts.UsernameTemplate = "x.{{.}}+y"
	reg = cfg.GenerateRegistration()
	if reg.EphemeralEvents || reg.SoruEphemeralEvents {
		t.Error("ephemeral_events: false still asks for ephemeral events")
	}
	if got := reg.Namespaces.UserIDs[0].Regex; got != `^@x\..+\+y:example\.org$` {
		t.Errorf("escaped namespace = %s", got)
	}
}

// TestRegistrationAppserviceEncryption: encryption.appservice asks the
// homeserver to push the ghosts' encryption data: MSC3202 for device lists
// and key counts, and ephemeral events, without which Synapse pushes no
// to-device messages (MSC2409), even when ephemeral_events is off.
func TestRegistrationAppserviceEncryption(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	if reg := cfg.GenerateRegistration(); reg.MSC3202 {
		t.Error("org.matrix.msc3202 set without encryption.appservice")
	}
	cfg.Appservice.EphemeralEvents = false
	cfg.Encryption.Appservice = true
	reg := cfg.GenerateRegistration()
	if !reg.MSC3202 || !reg.EphemeralEvents || !reg.SoruEphemeralEvents {
		t.Errorf("encryption.appservice registration: msc3202 %v, receive_ephemeral %v, push_ephemeral %v",
			reg.MSC3202, reg.EphemeralEvents, reg.SoruEphemeralEvents)
	}
	data, err := MarshalRegistration(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"org.matrix.msc3202: true", "de.sorunome.msc2409.push_ephemeral: true", "receive_ephemeral: true"} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("registration file lacks %q:\n%s", key, data)
		}
	}
}

func TestWriteRegistration(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	reg := cfg.GenerateRegistration()
	// A pre-existing world-readable file must not keep its mode.
	path := worldReadable(t, "registration.yaml", "old")
	if err := WriteRegistration(path, reg); err != nil {
		t.Fatal(err)
	}
	wantPrivate(t, path)
	loaded, err := appservice.LoadRegistration(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.AppToken != reg.AppToken || loaded.Namespaces.UserIDs[0].Regex != reg.Namespaces.UserIDs[0].Regex ||
		loaded.RateLimited == nil || *loaded.RateLimited {
		t.Errorf("round trip: %+v", loaded)
	}
}

// TestRegistrationExample keeps ../registration.yaml.example equal to what
// -g writes for the example config, with placeholders for the tokens.
func TestRegistrationExample(t *testing.T) {
	cfg, _, err := parse("example-config.yaml", ExampleConfig(), testEnv(nil), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	reg := cfg.GenerateRegistration()
	reg.AppToken = "GENERATED_BY_BRIDGE_G_AS_TOKEN"
	reg.ServerToken = "GENERATED_BY_BRIDGE_G_HS_TOKEN"
	want, err := MarshalRegistration(reg)
	if err != nil {
		t.Fatal(err)
	}
	const path = "../registration.yaml.example"
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; run `go test ./config -run TestRegistrationExample -update`\nwant:\n%s", path, want)
	}
}
