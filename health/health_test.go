package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

func TestReadinessChecks(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		db := testdb.Open(t, target)
		c := New(db, nil, func() []string { return []string{"live"} }, "1.2.3", zerolog.Nop())
		ready := func() (int, Readiness, string) {
			rec := httptest.NewRecorder()
			c.ReadyHandler().ServeHTTP(rec, httptest.NewRequest("GET", ReadyPath, nil))
			var r Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			return rec.Code, r, rec.Body.String()
		}
		if code, r, _ := ready(); code != http.StatusOK || !r.Ready || r.Checks["database"] != "ok" {
			t.Errorf("ready = %d %+v, want 200 with database ok", code, r)
		}

		// What high availability will add: a standby is not ready.
		active := false
		c.AddReadyCheck("active", func(context.Context) error {
			if !active {
				return errors.New("standby")
			}
			return nil
		})
		code, r, _ := ready()
		if code != http.StatusServiceUnavailable || r.Ready || r.Checks["active"] != "standby" || r.Checks["database"] != "ok" {
			t.Errorf("ready as standby = %d %+v, want 503 naming the failed check", code, r)
		}
		rec := httptest.NewRecorder()
		c.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", HealthPath, nil))
		var st Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK || st.Status != "degraded" || !st.Database.OK || st.Version != "1.2.3" ||
			len(st.Connectors) != 1 || st.Connectors[0] != (ConnectorStatus{ID: "live", Connected: true}) {
			t.Errorf("health as standby = %d %+v", rec.Code, st)
		}
		active = true
		if code, r, _ := ready(); code != http.StatusOK || !r.Ready {
			t.Errorf("ready as active = %d %+v", code, r)
		}

		_ = db.RawDB.Close()
		code, r, body := ready()
		if code != http.StatusServiceUnavailable || r.Checks["database"] != "unreachable" {
			t.Errorf("ready with the database closed = %d %+v", code, r)
		}
		// The driver's error (which may name hosts, users or files) stays in the log.
		if strings.Contains(body, "sql:") || strings.Contains(body, target.URI) {
			t.Errorf("readiness body leaks the driver error: %s", body)
		}
	})
}
