package netguard

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSpecialAddresses(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.5.5", "192.168.1.1",
		"169.254.169.254", "fe80::1", "fc00::1", "fd12::1", "100.64.0.1", "100.127.255.254",
		"224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1", "0.1.2.3", "192.0.0.8",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
		"64:ff9b:1::1", "2002:7f00:1::", "2002:a00:1::", "::127.0.0.1", "2001:db8::1", "fec0::1",
		"198.18.0.1", "2001::1",
	}
	for _, s := range refused {
		if why := special(netip.MustParseAddr(s)); why == "" {
			t.Errorf("%s should be refused", s)
		}
	}
	public := []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8", "100.128.0.1"}
	for _, s := range public {
		if why := special(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s should be allowed, got %q", s, why)
		}
	}
}

func TestPolicyAllowlist(t *testing.T) {
	p, err := NewPolicy([]string{"10.1.0.0/16", "192.168.7.7", "127.0.0.1:29351", "[::1]:8080", "Media.Internal", "files.lan:8443"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ap    string
		allow bool
	}{
		{"10.1.2.3:80", true}, {"10.2.0.1:80", false}, {"192.168.7.7:1", true}, {"192.168.7.8:1", false},
		{"127.0.0.1:29351", true}, {"127.0.0.1:29352", false}, {"[::1]:8080", true}, {"[::ffff:10.1.0.1]:80", true},
		{"[::1]:80", false}, {"8.8.8.8:443", true},
	}
	for _, c := range cases {
		err := p.CheckAddr(netip.MustParseAddrPort(c.ap))
		if (err == nil) != c.allow {
			t.Errorf("%s: allowed=%v, want %v (%v)", c.ap, err == nil, c.allow, err)
		}
		if err != nil && (strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "10.2.0.1")) {
			t.Errorf("refusal text names the address: %q", err)
		}
		if err != nil && !strings.Contains(Detail(err), netip.MustParseAddrPort(c.ap).Addr().Unmap().String()) {
			t.Errorf("refusal detail %q does not name %s", Detail(err), c.ap)
		}
	}
	if !p.HostAllowed("media.internal.", "443") || !p.HostAllowed("files.lan", "8443") || p.HostAllowed("files.lan", "443") || p.HostAllowed("evil.example", "80") {
		t.Error("host allowlist wrong")
	}
	for _, bad := range []string{"", "10.0.0.0/33", "not a host", "host:0", "host:99999", "-bad.example"} {
		if ValidateEntry(bad) == nil {
			t.Errorf("entry %q should be invalid", bad)
		}
	}
}

// TestClientRefusesAtConnect uses real servers on loopback: refused by
// default, reachable when allowed, and a redirect from an allowed server to
// a refused one is cut off before the second server sees a request.
func TestClientRefusesAtConnect(t *testing.T) {
	var hitsInternal atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hitsInternal.Add(1)
		_, _ = w.Write([]byte("secret"))
	}))
	defer internal.Close()
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("fine"))
		case "/to-internal":
			http.Redirect(w, r, strings.Replace(internal.URL, "127.0.0.1", "localhost", 1)+"/x", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	defer allowed.Close()
	get := func(p *Policy, url string) error {
		c := p.NewClient(p.NewTransport(&net.Dialer{Timeout: 5 * time.Second}))
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	if err := get(&Policy{}, internal.URL); !IsRefused(err) {
		t.Fatalf("loopback by default: %v, want a refusal", err)
	}
	if err := get(&Policy{}, strings.Replace(internal.URL, "127.0.0.1", "localhost", 1)); !IsRefused(err) {
		t.Fatalf("a name resolving to loopback: %v, want a refusal", err)
	}
	if hitsInternal.Load() != 0 {
		t.Fatal("the refused server got a request")
	}
	open, err := NewPolicy([]string{allowed.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := get(open, allowed.URL+"/ok"); err != nil {
		t.Fatalf("allowed server: %v", err)
	}
	for _, path := range []string{"/to-internal", "/to-metadata", "/to-file"} {
		if err := get(open, allowed.URL+path); !IsRefused(err) {
			t.Errorf("redirect %s: %v, want a refusal", path, err)
		}
	}
	if err := get(open, allowed.URL+"/loop"); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("redirect loop: %v", err)
	}
	if hitsInternal.Load() != 0 {
		t.Fatal("the refused server got a request through a redirect")
	}
	// A host name entry opens that name whatever it resolves to, and only it.
	byName, err := NewPolicy([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := get(byName, strings.Replace(internal.URL, "127.0.0.1", "localhost", 1)); err != nil {
		t.Errorf("allowed host name: %v", err)
	}
	if err := get(byName, internal.URL); !IsRefused(err) {
		t.Errorf("the address behind an allowed name, dialled directly: %v, want a refusal", err)
	}
}
