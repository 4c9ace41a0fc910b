package portal

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSummaryLine: the summary sums up what happened since the last one in
// one info line, counts afresh afterwards, and says nothing for an idle
// interval.
func TestSummaryLine(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.InfoLevel)
	var s bridgeStats
	s.logSummary(&log, time.Minute)
	if buf.Len() != 0 {
		t.Fatalf("idle interval logged %q", buf.String())
	}
	for range 3 {
		s.toMatrix.Add(1)
	}
	s.toNetwork.Add(2)
	s.matrixErrors.Add(1)
	s.logSummary(&log, time.Minute)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("summary %q: %v", buf.String(), err)
	}
	want := map[string]float64{"to_matrix": 3, "to_network": 2, "errors_to_matrix": 1, "errors_to_network": 0}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, line[k], v, buf.String())
		}
	}
	if line["level"] != "info" {
		t.Errorf("summary level = %v, want info", line["level"])
	}
	buf.Reset()
	s.logSummary(&log, time.Minute)
	if buf.Len() != 0 {
		t.Errorf("counts were not reset: %q", buf.String())
	}
}
