package portal

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/matrix"
)

type puppetFlag struct {
	matrix.API
	doublePuppet bool
}

func (p puppetFlag) IsDoublePuppet() bool { return p.doublePuppet }

// TestSendContentCarriesTxnKey: a ghost's content goes out as finished JSON
// that decodes to the content with the transaction id beside it; a double
// puppet's stays an event.Content, to which mautrix adds its mark.
func TestSendContentCarriesTxnKey(t *testing.T) {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: `a "quoted" body`}
	raw, ok := sendContent(puppetFlag{}, content, "dmb_1").(json.RawMessage)
	if !ok {
		t.Fatal("a ghost's content is not finished JSON")
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if got["body"] != content.Body || got["msgtype"] != "m.text" || got[contentTxnKey] != "dmb_1" {
		t.Fatalf("decoded %v", got)
	}
	if raw, ok := sendContent(puppetFlag{}, struct{}{}, "dmb_2").(json.RawMessage); !ok || string(raw) != `{"`+contentTxnKey+`":"dmb_2"}` {
		t.Fatalf("empty content: %s", raw)
	}
	if c, ok := sendContent(puppetFlag{doublePuppet: true}, content, "dmb_3").(*event.Content); !ok || c.Raw[contentTxnKey] != "dmb_3" {
		t.Fatalf("a double puppet's content is %T", c)
	}
}
