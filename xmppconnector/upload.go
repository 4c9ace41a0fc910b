package xmppconnector

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/dmbridge/dmbridge/internal/xmppclient"
	"github.com/dmbridge/dmbridge/netguard"
)

// HTTP File Upload (XEP-0363): the server hands out a slot (a PUT and a
// GET URL) for a file of a given size, the client PUTs the bytes, then
// shares the GET URL. This file finds the service and talks to it.

const (
	nsDiscoItems  = "http://jabber.org/protocol/disco#items" // XEP-0030
	nsHTTPUpload  = "urn:xmpp:http:upload:0"                 // XEP-0363
	nsDataForms   = "jabber:x:data"                          // XEP-0004
	maxFileSizeFV = "max-file-size"
)

// uploadService is the upload component of an account's server.
type uploadService struct {
	jid     string
	maxSize int64 // 0: the service announces no limit
}

// discoQuery is a disco#info or disco#items request.
type discoQuery struct {
	iqOut
	Query struct {
		XMLName xml.Name
	}
}

func newDiscoQuery(to, ns string) discoQuery {
	q := discoQuery{iqOut: newRequest("get", to)}
	q.Query.XMLName = xml.Name{Space: ns, Local: "query"}
	return q
}

type discoItems struct {
	Items []struct {
		JID  string `xml:"jid,attr"`
		Node string `xml:"node,attr"`
	} `xml:"item"`
}

type discoInfo struct {
	Features []discoFeature `xml:"feature"`
	Forms    []struct {
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
}

// upload reports whether the entity is an upload service, and its limit.
// The limit sits in the form whose FORM_TYPE is the upload namespace.
func (d *discoInfo) upload() (bool, int64) {
	if !contains(featureVars(d.Features), nsHTTPUpload) {
		return false, 0
	}
	for _, f := range d.Forms {
		var formType string
		var limit int64
		for _, field := range f.Fields {
			if len(field.Values) == 0 {
				continue
			}
			switch field.Var {
			case "FORM_TYPE":
				formType = strings.TrimSpace(field.Values[0])
			case maxFileSizeFV:
				limit, _ = strconv.ParseInt(strings.TrimSpace(field.Values[0]), 10, 64)
			}
		}
		if formType == nsHTTPUpload && limit > 0 {
			return true, limit
		}
	}
	return true, 0
}

func featureVars(fs []discoFeature) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Var)
	}
	return out
}

// discoverUpload looks for an upload service among the server's items
// (where Prosody and ejabberd list it), then on the server itself. nil
// without error means the server has none.
func discoverUpload(ctx context.Context, c *xmppConn, domain string) (*uploadService, error) {
	var items discoItems
	if err := c.request(ctx, newDiscoQuery(domain, nsDiscoItems), &items); err != nil {
		return nil, fmt.Errorf("disco#items of %s: %w", domain, err)
	}
	candidates := []string{}
	for _, it := range items.Items {
		if it.Node == "" && it.JID != "" {
			candidates = append(candidates, it.JID)
		}
	}
	candidates = append(candidates, domain)
	for _, who := range uniq(candidates) {
		var info discoInfo
		if err := c.request(ctx, newDiscoQuery(who, nsDiscoInfo), &info); err != nil {
			// One item that does not answer (a remote component, say) must
			// not hide the upload service behind it.
			var iqErr *iqError
			if errors.As(err, &iqErr) {
				continue
			}
			return nil, fmt.Errorf("disco#info of %s: %w", who, err)
		}
		if ok, limit := info.upload(); ok {
			return &uploadService{jid: who, maxSize: limit}, nil
		}
	}
	return nil, nil
}

// slotRequest asks for an upload slot (XEP-0363 §4).
type slotRequest struct {
	iqOut
	Request struct {
		XMLName     xml.Name `xml:"urn:xmpp:http:upload:0 request"`
		Filename    string   `xml:"filename,attr"`
		Size        int64    `xml:"size,attr"`
		ContentType string   `xml:"content-type,attr,omitempty"`
	}
}

// slot is the server's answer to a slotRequest.
type slot xmppclient.UploadSlot

func (s *uploadService) requestSlot(ctx context.Context, c *xmppConn, name string, size int64, mimetype string) (*slot, error) {
	req := slotRequest{iqOut: newRequest("get", s.jid)}
	req.Request.Filename, req.Request.Size, req.Request.ContentType = name, size, mimetype
	var sl slot
	if err := c.request(ctx, req, &sl); err != nil {
		return nil, err
	}
	if sl.Put.URL == "" || sl.Get.URL == "" {
		return nil, errors.New("the upload service answered without a slot")
	}
	return &sl, nil
}

// put streams size bytes from body to the slot. Only the headers XEP-0363
// allows are passed on: the server must not be able to make us send
// anything else.
func (sl *slot) put(ctx context.Context, hc *http.Client, body io.Reader, size int64, mimetype string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sl.Put.URL, body)
	if err != nil {
		return &putError{err: err}
	}
	// A known length: the service checks it against the slot, and the
	// transport streams the body instead of chunking it.
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", mimetype)
	for _, h := range sl.Put.Headers {
		switch http.CanonicalHeaderKey(h.Name) {
		case "Authorization", "Cookie", "Expires":
			req.Header.Set(h.Name, strings.Join(strings.Fields(h.Value), " "))
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &putError{err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &putError{status: resp.StatusCode}
	}
	return nil
}

// putError is a failed upload; status is 0 when no answer came.
type putError struct {
	status int
	err    error
}

func (e *putError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("upload answered HTTP %d", e.status)
	}
	if netguard.IsRefused(e.err) {
		// Without the slot URL, which names the internal address.
		return "upload failed: " + netguard.ErrRefused.Error()
	}
	return "upload failed: " + e.err.Error()
}

func (e *putError) Unwrap() error { return e.err }
