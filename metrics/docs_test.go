package metrics

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestMetricsAreDocumented keeps the operator documentation, the README and
// the Grafana dashboard in step with what the registry serves: every bridge
// metric is documented, and nothing documented or graphed is missing.
func TestMetricsAreDocumented(t *testing.T) {
	target := testdb.SQLite(t)
	db := testdb.Open(t, target)
	if _, err := db.Exec(context.Background(), "INSERT INTO login (id, connector_id, matrix_user) VALUES ('l', 'c', '@u:x')"); err != nil {
		t.Fatal(err)
	}
	m := New()
	m.WatchState(Sources{DB: db, Connectors: func() []string { return nil }, Log: zerolog.Nop()})
	// Every family gets a child, so that Gather lists it.
	m.RemoteTakenIn("c", 1, time.Now())
	m.RemoteApplied("c", 1, "message")
	m.ConnectorConnected("c")
	m.Repaired(RepairJoin)
	m.hsRequests.WithLabelValues(ClassSend).Inc()
	m.hsErrors.WithLabelValues(ClassSend, "5xx").Inc()
	m.hsDuration.WithLabelValues(ClassSend).Observe(0)
	m.WatchDoublePuppetSync(func() (int, int) { return 1, 0 })
	m.WatchE2EE(func() int { return 0 })
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), Namespace+"_") {
			served = append(served, f.GetName())
		}
	}
	if len(served) < 13 {
		t.Fatalf("only %d bridge metrics gathered: %v", len(served), served)
	}
	name := regexp.MustCompile(Namespace + `_[a-z_]+`)
	for _, doc := range []string{"../docs/operations.md", "../README.md", "../docs/grafana-dashboard.json"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, ref := range name.FindAllString(text, -1) {
			base := ref
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !slices.Contains(served, base) {
				t.Errorf("%s names %s, which the bridge does not serve", doc, ref)
			}
		}
		if doc == "../docs/grafana-dashboard.json" {
			continue
		}
		for _, s := range served {
			if !strings.Contains(text, "`"+s+"`") {
				t.Errorf("%s does not document %s", doc, s)
			}
		}
	}
}
