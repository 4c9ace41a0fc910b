package testxmpp

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/internal/xmppclient"
)

// Upload puts data on the server's HTTP File Upload service (XEP-0363) the
// way a client does before sharing a file, and returns the GET URL. It
// asks UploadDomain directly: discovering the service is the connector's
// job under test, not the remote party's.
func (c *Client) Upload(t testing.TB, name, contentType string, data []byte) string {
	t.Helper()
	iq := fmt.Sprintf(`<iq type='get' to='%s' id='%s'><request xmlns='urn:xmpp:http:upload:0' filename='%s' size='%d' content-type='%s'/></iq>`,
		UploadDomain, NewID(), esc(name), len(data), esc(contentType))
	resp, err := c.sess.SendIQ(t.Context(), xml.NewDecoder(strings.NewReader(iq)))
	if err != nil {
		t.Fatalf("testxmpp: requesting an upload slot: %v", err)
	}
	defer resp.Close()
	var answer struct {
		Type string                `xml:"type,attr"`
		Slot xmppclient.UploadSlot `xml:"urn:xmpp:http:upload:0 slot"`
	}
	if err := xml.NewTokenDecoder(resp).Decode(&answer); err != nil {
		t.Fatalf("testxmpp: reading the upload slot: %v", err)
	}
	if answer.Type != "result" || answer.Slot.Put.URL == "" {
		t.Fatalf("testxmpp: no upload slot (answer type %q)", answer.Type)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, answer.Slot.Put.URL, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for _, h := range answer.Slot.Put.Headers {
		req.Header.Set(h.Name, strings.TrimSpace(h.Value))
	}
	put, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testxmpp: uploading %s: %v", name, err)
	}
	body, _ := io.ReadAll(put.Body)
	_ = put.Body.Close()
	if put.StatusCode/100 != 2 {
		t.Fatalf("testxmpp: uploading %s: HTTP %d %s", name, put.StatusCode, body)
	}
	return answer.Slot.Get.URL
}
