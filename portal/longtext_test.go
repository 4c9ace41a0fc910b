package portal

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSplitTextKeepsEverythingWithinLimit(t *testing.T) {
	inputs := []string{
		strings.Repeat("a", 100_000),
		strings.Repeat("<&>\"\\\n\x01é😀 word ", 5_000),
		strings.Repeat("x", 50) + "\xff\xfe" + strings.Repeat("\u2028", 9_000),
		"short",
	}
	for _, in := range inputs {
		const limit = 4096
		parts := splitText(in, limit)
		if strings.Join(parts, "") != in {
			t.Fatalf("parts of a %d-byte text do not join back to it", len(in))
		}
		for i, p := range parts {
			encoded, _ := json.Marshal(p)
			if len(encoded)-2 > limit {
				t.Fatalf("part %d encodes to %d bytes, limit %d", i, len(encoded)-2, limit)
			}
			if p == "" {
				t.Fatalf("part %d is empty", i)
			}
		}
	}
}

func TestSplitTextPrefersWordBreaks(t *testing.T) {
	in := strings.Repeat("word ", 2_000)
	for i, p := range splitText(in, 1000)[:3] {
		if !strings.HasSuffix(p, " ") {
			t.Fatalf("part %d ends mid-word: %q", i, p[len(p)-10:])
		}
	}
}
