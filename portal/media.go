package portal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/netguard"
)

// imageHeaderBytes is how much of an image is looked at for its dimensions.
// JPEG puts EXIF data (which can hold a thumbnail) before the frame header,
// so this is generous; the bytes are kept and uploaded, not read twice.
const imageHeaderBytes = 256 << 10

// newMediaHTTPClient fetches attachments. It has no overall timeout because
// a large file on a slow link may take long; a connector that does not
// answer at all is cut off by the header timeout, one that stalls mid-body
// by the job's context. The URLs come from the network, so every address
// dialled, redirects included, goes through the guard.
func newMediaHTTPClient(guard *netguard.Policy) *http.Client {
	t := guard.NewTransport(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	t.ResponseHeaderTimeout = 60 * time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = 4
	return guard.NewClient(t)
}

// errTooLarge marks media over bridge.max_media_bytes.
var errTooLarge = errors.New("file is larger than the bridge's limit")

// attachmentContents uploads a message's attachments and returns one Matrix
// event per attachment. An attachment over the size limit becomes a notice
// that says so, so the user is never left with a silently missing file.
func (m *Manager) attachmentContents(ctx context.Context, intent matrix.API, encrypt bool, ev *connector.Event) ([]*event.MessageEventContent, error) {
	contents := make([]*event.MessageEventContent, 0, len(ev.Attachments))
	for i := range ev.Attachments {
		a := &ev.Attachments[i]
		content, err := m.attachmentContent(ctx, intent, encrypt, a)
		if errors.Is(err, errTooLarge) {
			zerolog.Ctx(ctx).Warn().Str("name", a.Name).Int64("size", a.Size).Msg("Attachment too large to bridge")
			content = tooLargeNotice(a.Name, a.Size, m.cfg.Bridge.MaxMediaBytes)
		} else if netguard.IsRefused(err) {
			// No retry can change the answer. The address stays in the
			// operator's log and out of the room.
			zerolog.Ctx(ctx).Warn().Str("name", a.Name).Str("refused", netguard.Detail(err)).
				Msg("Attachment link points to an address the bridge may not fetch")
			content = refusedNotice(a.Name)
		} else if err != nil {
			return nil, fmt.Errorf("bridge attachment %d (%s): %w", i, a.Name, err)
		}
		contents = append(contents, content)
	}
	return contents, nil
}

func (m *Manager) attachmentContent(ctx context.Context, intent matrix.API, encrypt bool, a *connector.Attachment) (*event.MessageEventContent, error) {
	limit := m.cfg.Bridge.MaxMediaBytes
	if a.Size > limit {
		return nil, errTooLarge
	}
	body, length, err := m.openAttachment(ctx, a)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if length > limit {
		return nil, errTooLarge
	}
	mime := a.MimeType
	if mime == "" {
		mime = "application/octet-stream"
	}
	content := &event.MessageEventContent{
		MsgType:  msgTypeOf(mime),
		Body:     a.Name,
		FileName: a.Name,
		Info:     &event.FileInfo{MimeType: mime},
	}
	if content.Body == "" {
		content.Body = "file"
	}
	counted := &limitedReader{r: body, left: limit}
	var upload io.Reader = counted
	if content.MsgType == event.MsgImage {
		// The peeked header stays in the buffer and is uploaded with the rest.
		buffered := bufio.NewReaderSize(counted, imageHeaderBytes)
		head, _ := buffered.Peek(imageHeaderBytes)
		// The claim is checked against the bytes (mediasniff.go): what is
		// not an image goes as a plain file, never served as one.
		var isImage bool
		if mime, isImage = imageType(mime, head); !isImage {
			content.MsgType = event.MsgFile
		}
		content.Info.MimeType = mime
		if w, h, ok := imageSize(head); ok && isImage {
			content.Info.Width, content.Info.Height = w, h
		}
		upload = buffered
	}
	req := mautrix.ReqUploadMedia{Content: upload, ContentLength: length, ContentType: mime, FileName: a.Name}
	if length <= 0 {
		req.ContentLength = -1
	}
	file := encryptUpload(encrypt, &req)
	resp, err := intent.UploadMedia(ctx, req)
	if counted.exceeded || errors.Is(err, mautrix.MTooLarge) {
		return nil, errTooLarge
	} else if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	content.URL = resp.ContentURI.CUString()
	content.Info.Size = int(counted.read)
	if err = file.finish(content); err != nil {
		return nil, err
	}
	return content, nil
}

// openAttachment returns the attachment's bytes as a stream, and their length
// when known (-1 if not).
func (m *Manager) openAttachment(ctx context.Context, a *connector.Attachment) (io.ReadCloser, int64, error) {
	if a.URL == "" {
		return io.NopCloser(bytes.NewReader(a.Data)), int64(len(a.Data)), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: bad attachment url", errPermanent)
	}
	if err = netguard.CheckScheme(req.URL.Scheme); err != nil {
		return nil, 0, err
	}
	resp, err := m.mediaHTTP.Do(req)
	if err != nil {
		// The error names the URL and maybe an internal address, and its
		// text may reach the room in a failure notice: log it, hide it.
		zerolog.Ctx(ctx).Debug().Err(err).Msg("Attachment fetch failed")
		return nil, 0, &fetchFailed{cause: err}
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		err = fmt.Errorf("fetch: HTTP %d", resp.StatusCode)
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
			err = fmt.Errorf("%w: %v", errPermanent, err)
		}
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// fetchFailed is a failed download whose text leaves out the URL and the
// address; the cause stays reachable for errors.Is and netguard.Detail.
type fetchFailed struct{ cause error }

func (f *fetchFailed) Error() string {
	if netguard.IsRefused(f.cause) {
		return "fetch: " + netguard.ErrRefused.Error()
	}
	var netErr net.Error
	if errors.As(f.cause, &netErr) && netErr.Timeout() {
		return "fetch: the file's server did not answer in time"
	}
	return "fetch: the file's server could not be reached"
}

func (f *fetchFailed) Unwrap() error { return f.cause }

// limitedReader stops with an error once more than left bytes came through,
// so that a file whose size was not announced cannot exceed the limit.
type limitedReader struct {
	r        io.Reader
	left     int64
	read     int64
	exceeded bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.left {
		l.exceeded = true
		return n, errTooLarge
	}
	return n, err
}

func msgTypeOf(mime string) event.MessageType {
	switch {
	case strings.HasPrefix(mime, "image/"):
		return event.MsgImage
	case strings.HasPrefix(mime, "video/"):
		return event.MsgVideo
	case strings.HasPrefix(mime, "audio/"):
		return event.MsgAudio
	}
	return event.MsgFile
}

func tooLargeNotice(name string, size, limit int64) *event.MessageEventContent {
	what := "A file"
	if name != "" {
		what = fmt.Sprintf("The file %q", name)
	}
	sizeText := ""
	if size > 0 {
		sizeText = " (" + humanBytes(size) + ")"
	}
	return &event.MessageEventContent{
		MsgType: event.MsgNotice,
		Body:    fmt.Sprintf("⚠️ %s%s was not bridged: it is larger than the bridge's limit of %s.", what, sizeText, humanBytes(limit)),
	}
}

// refusedNotice stands in for an attachment whose link points into the
// bridge's own network. It does not repeat the link.
func refusedNotice(name string) *event.MessageEventContent {
	what := "A file"
	if name != "" {
		what = fmt.Sprintf("The file %q", name)
	}
	return &event.MessageEventContent{
		MsgType: event.MsgNotice,
		Body:    fmt.Sprintf("⚠️ %s was not bridged: its link points to an address the bridge does not fetch from.", what),
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
