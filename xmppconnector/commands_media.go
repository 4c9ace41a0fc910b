package xmppconnector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/netguard"
)

// attachmentOpener is the part of the SDK client that fetches a command's
// files (inline, or from the bridge's media endpoint with the token).
type attachmentOpener interface {
	OpenAttachment(ctx context.Context, hc *http.Client, a *connector.Attachment) (io.ReadCloser, error)
}

// oobOut (XEP-0066) is what makes clients show a shared URL as a file.
type oobOut struct {
	URL string `xml:"url"`
}

// sendFiles uploads each attachment to the server's upload service and
// shares it as a message of its own whose body is the GET URL, as
// Conversations, Dino and Gajim do. The first stanza carries the txn as
// id and origin-id like a text send; further files and a caption get
// derived ids, recorded as aliases so their archive copies are not
// bridged back as new messages.
func (a *account) sendFiles(ctx context.Context, conn *xmppConn, peer, id string, cmd *connector.Command) (*connector.Result, error) {
	svc := conn.upload
	if svc == nil {
		return nil, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("the XMPP server of %s offers no file upload (XEP-0363)", a.login)}
	}
	if a.files == nil {
		return nil, errors.New("no attachment opener")
	}
	var msgs []outMessage
	ids := []string{}
	for i := range cmd.Attachments {
		att := &cmd.Attachments[i]
		began := time.Now()
		url, size, err := a.uploadFile(ctx, conn, svc, att)
		if err != nil {
			return nil, err
		}
		a.log.Debug().Str("file", att.Name).Int64("size", size).Dur("took", time.Since(began)).Msg("Uploaded a file")
		sid := id
		if i > 0 {
			sid = fmt.Sprintf("%s-%d", id, i+1)
		}
		msgs = append(msgs, outMessage{To: peer, ID: sid, Type: "chat", OriginID: &idEl{ID: sid}, Body: url, OOB: &oobOut{URL: url}, Markable: &struct{}{}})
		ids = append(ids, sid)
	}
	if caption := strings.TrimSpace(cmd.Text); caption != "" && !isFileName(caption, cmd.Attachments) {
		sid := id + "-text"
		msgs = append(msgs, outMessage{To: peer, ID: sid, Type: "chat", OriginID: &idEl{ID: sid}, Body: cmd.Text, Markable: &struct{}{}})
		ids = append(ids, sid)
	}
	if cmd.ReplyTo != "" {
		to, err := a.store.XMPPID(ctx, a.login, peer, cmd.ReplyTo)
		if err != nil {
			return nil, err
		}
		msgs[0].Reply = &replyEl{To: peer, ID: to}
	}
	msgs[len(msgs)-1].ChatState = chatState("active")
	for i := range msgs {
		if err := conn.send(ctx, msgs[i]); err != nil {
			// The uploads are lost on a retry, but a slot is cheap and a
			// resend keeps the same origin-ids.
			return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
		}
	}
	eff := &effects{login: a.login, refs: []msgRef{{chat: peer, bridgeID: id, xmppID: id, aliases: ids[1:], author: a.login}}}
	if err := a.store.Apply(ctx, eff); err != nil {
		a.log.Error().Err(err).Msg("Sent files, but could not record it")
	}
	return &connector.Result{ID: id, TS: time.Now().UnixMilli()}, nil
}

// isFileName recognises a "caption" that is only the file's name, which
// is what Matrix clients put in the body of every file message.
func isFileName(text string, atts []connector.Attachment) bool {
	for _, att := range atts {
		if text == att.Name {
			return true
		}
	}
	return false
}

// uploadFile streams one attachment into a fresh slot and returns its GET
// URL and size.
func (a *account) uploadFile(ctx context.Context, conn *xmppConn, svc *uploadService, att *connector.Attachment) (string, int64, error) {
	name := uploadName(att.Name)
	mimetype := att.MimeType
	if mimetype == "" {
		mimetype = mimeByName(name)
	}
	// The announced size can only be trusted to refuse early: the bridge
	// may have understated it. The real length comes with the download.
	if svc.maxSize > 0 && att.Size > svc.maxSize {
		return "", 0, tooLarge(name, att.Size, svc.maxSize)
	}
	body, size, err := a.openFile(ctx, att, svc.maxSize)
	if err != nil {
		return "", 0, err
	}
	defer body.Close()
	if svc.maxSize > 0 && size > svc.maxSize {
		return "", 0, tooLarge(name, size, svc.maxSize)
	}
	sl, err := svc.requestSlot(ctx, conn, name, size, mimetype)
	if err != nil {
		return "", 0, slotError(name, size, svc.maxSize, err)
	}
	if err := sl.put(ctx, a.uploadHTTP, body, size, mimetype); err != nil {
		var pe *putError
		retry := !errors.As(err, &pe) || pe.status == 0 || pe.status >= 500 || pe.status == http.StatusRequestTimeout || pe.status == http.StatusTooManyRequests
		return "", 0, &connector.Error{Code: connector.ErrNetwork, Message: fmt.Sprintf("uploading %q: %v", name, err), Retryable: retry}
	}
	return sl.Get.URL, size, nil
}

// newUploadClient has no overall timeout: a large file may take long, and
// the command's context bounds it anyway. Check has validated allow; if it
// somehow does not parse, every internal address stays refused.
func newUploadClient(allow []string, log zerolog.Logger) *http.Client {
	guard, err := netguard.NewPolicy(allow)
	if err != nil {
		log.Err(err).Msg("Invalid xmpp.upload_allow, refusing every internal address")
		guard = &netguard.Policy{}
	}
	return guard.NewClient(guard.NewTransport(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}))
}

// uploadName is a file name the service accepts: no directories, never empty.
func uploadName(name string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	if name == "" || name == "." || name == "/" || name == ".." {
		return "file"
	}
	return name
}

// openFile opens an attachment and finds its exact length, which the slot
// request needs before the first byte is sent. Inline data and downloads
// with a Content-Length stream straight through; only a download without
// one is spooled to a temporary file (at most limit+1 bytes of it).
func (a *account) openFile(ctx context.Context, att *connector.Attachment, limit int64) (io.ReadCloser, int64, error) {
	if att.URL == "" {
		return io.NopCloser(bytes.NewReader(att.Data)), int64(len(att.Data)), nil
	}
	probe := &responseProbe{base: http.DefaultTransport}
	rc, err := a.files.OpenAttachment(ctx, &http.Client{Transport: probe}, att)
	if err != nil {
		// 404, 410 and 413 (over the bridge's own limit) stay that way.
		final := probe.status == http.StatusNotFound || probe.status == http.StatusGone || probe.status == http.StatusRequestEntityTooLarge
		return nil, 0, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: !final}
	}
	if probe.length >= 0 {
		return rc, probe.length, nil
	}
	defer rc.Close()
	return spool(rc, att.Name, limit)
}

// responseProbe remembers the status and length of the last response, which
// OpenAttachment does not hand out.
type responseProbe struct {
	base   http.RoundTripper
	status int
	length int64
}

func (p *responseProbe) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(r)
	if resp != nil {
		p.status, p.length = resp.StatusCode, resp.ContentLength
	}
	return resp, err
}

func spool(r io.Reader, name string, limit int64) (io.ReadCloser, int64, error) {
	f, err := os.CreateTemp("", "dmbridge-upload-*")
	if err != nil {
		return nil, 0, err
	}
	tmp := &tempFile{f}
	src := r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(f, src)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = tmp.Close()
		return nil, 0, &connector.Error{Code: connector.ErrNetwork, Message: fmt.Sprintf("fetching %q: %v", name, err), Retryable: true}
	}
	if limit > 0 && n > limit {
		_ = tmp.Close()
		return nil, 0, tooLarge(uploadName(name), n, limit)
	}
	return tmp, n, nil
}

// tempFile is removed when closed.
type tempFile struct{ *os.File }

func (t *tempFile) Close() error {
	err := t.File.Close()
	_ = os.Remove(t.Name())
	return err
}

// slotError turns a refused slot request into the protocol error the
// bridge shows the user; only a request that got no answer is retried.
func slotError(name string, size, limit int64, err error) error {
	var iqErr *iqError
	if !errors.As(err, &iqErr) {
		return &connector.Error{Code: connector.ErrNetwork, Message: fmt.Sprintf("requesting an upload slot for %q: %v", name, err), Retryable: true}
	}
	switch iqErr.Condition {
	case "not-acceptable":
		// XEP-0363 §4: the file is too large for the service.
		if limit > 0 {
			return tooLarge(name, size, limit)
		}
		return &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("the XMPP server refused %q (%s)", name, humanSize(size))}
	case "resource-constraint":
		return &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("the XMPP server refused %q: upload quota used up", name)}
	case "forbidden", "not-allowed":
		return &connector.Error{Code: connector.ErrForbidden, Message: fmt.Sprintf("the XMPP server does not let %q be uploaded (%s)", name, iqErr.Condition)}
	}
	return &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("the XMPP server refused an upload slot for %q: %s", name, iqErr.Condition)}
}

func tooLarge(name string, size, limit int64) error {
	return &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf(
		"%q (%s) is larger than the XMPP server's upload limit of %s", name, humanSize(size), humanSize(limit))}
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
