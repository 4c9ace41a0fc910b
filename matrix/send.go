package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The send of a bridged message is the bridge's one homeserver call per
// message, and mautrix's generic request path was a fifth of the bridge's
// CPU per message: the URL built through url.URL and url.Values and then
// parsed again, a sub-logger and context values per request, its log
// line's URL rendered even with debug logging off. sendPlain makes the
// same PUT /rooms/{roomId}/send/{eventType}/{txnId} request with less: the
// URL (byte for byte what mautrix builds, user_id and ts included) in one
// string, the same headers and body, through the same http.Client (so the
// same transport, deadline and metrics), with mautrix's own error types
// (ParseErrorResponse for a refusal). It covers only the request mautrix
// would make once, as it is: anything else (an encrypted room, retries,
// an unusual homeserver URL, hooks mautrix would call) goes through
// mautrix.

// sendPlain sends content as it is, or reports false when mautrix must
// make the request (see plainSendable). unencrypted: the caller has just
// found the room unencrypted in the state store, which is not asked again.
func sendPlain(ctx context.Context, cli *mautrix.Client, roomID id.RoomID, eventType event.Type, content any, req mautrix.ReqSendEvent, unencrypted bool) (*mautrix.RespSendEvent, bool, error) {
	prefix, ok := plainSendable(ctx, cli, req)
	if !ok {
		return nil, false, nil
	}
	if cli.Crypto != nil && !unencrypted && !req.DontEncrypt && eventType != event.EventReaction && eventType != event.EventEncrypted {
		// mautrix encrypts it in an encrypted room (and reports a failed
		// check): both are its to do.
		if encrypted, err := cli.StateStore.IsEncrypted(ctx, roomID); err != nil || encrypted {
			return nil, false, nil
		}
	}
	resp, err := doPlainSend(ctx, cli, sendURL(prefix, cli, roomID, eventType, req), content)
	return resp, true, err
}

// plainSendable reports whether mautrix would make the request exactly once,
// with nothing sendPlain leaves out, and returns the homeserver's part of
// the URL.
func plainSendable(ctx context.Context, cli *mautrix.Client, req mautrix.ReqSendEvent) (string, bool) {
	if cli == nil || cli.Client == nil || cli.RequestRetryTrigger != nil || (cli.Crypto != nil && cli.StateStore == nil) ||
		req.TransactionID == "" || req.MeowEventID != "" || req.UnstableDelay != 0 || req.UnstableStickyDuration != 0 {
		return "", false
	}
	attempts, ok := ctx.Value(mautrix.MaxAttemptsContextKey).(int)
	if !ok || attempts <= 0 {
		attempts = 1 + cli.DefaultHTTPRetries
	}
	if attempts != 1 {
		return "", false
	}
	return homeserverPrefix(cli.HomeserverURL)
}

// homeserverPrefix is "scheme://host" of hs, when hs is a bare homeserver
// address (no path, query or user info), the only kind for which the URL
// below is what mautrix.BuildURL makes; false for any other. It is worked
// out for every send rather than kept: a package-level cache would be
// state shared by every bridge in the process, and this costs one small
// string.
func homeserverPrefix(hs *url.URL) (string, bool) {
	if hs == nil || hs.Scheme == "" || hs.Host == "" || hs.Opaque != "" || hs.User != nil ||
		(hs.Path != "" && hs.Path != "/") || hs.RawPath != "" || hs.RawQuery != "" || hs.ForceQuery || hs.Fragment != "" {
		return "", false
	}
	return (&url.URL{Scheme: hs.Scheme, Host: hs.Host}).String(), true
}

// sendURL is mautrix's URL for the send: each path segment escaped with
// url.PathEscape, the query's keys in the sorted order of
// url.Values.Encode.
func sendURL(prefix string, cli *mautrix.Client, roomID id.RoomID, eventType event.Type, req mautrix.ReqSendEvent) string {
	var b strings.Builder
	b.Grow(len(prefix) + 160 + len(roomID) + len(req.TransactionID) + len(cli.UserID))
	b.WriteString(prefix)
	b.WriteString("/_matrix/client/v3/rooms/")
	b.WriteString(url.PathEscape(string(roomID)))
	b.WriteString("/send/")
	b.WriteString(url.PathEscape(eventType.String()))
	b.WriteByte('/')
	b.WriteString(url.PathEscape(req.TransactionID))
	sep := byte('?')
	param := func(key, value string) {
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(value))
	}
	if cli.SetAppServiceDeviceID && cli.DeviceID != "" {
		param("device_id", string(cli.DeviceID))
		param("org.matrix.msc3202.device_id", string(cli.DeviceID))
	}
	if req.Timestamp > 0 {
		param("ts", strconv.FormatInt(req.Timestamp, 10))
	}
	if cli.SetAppServiceUserID {
		param("user_id", string(cli.UserID))
	}
	return b.String()
}

// doPlainSend is mautrix's MakeRequest for one attempt: the same headers,
// the same response size limit and the same errors.
func doPlainSend(ctx context.Context, cli *mautrix.Client, sendURL string, content any) (*mautrix.RespSendEvent, error) {
	body, err := json.Marshal(content)
	if err != nil {
		return nil, mautrix.HTTPError{Message: "failed to marshal JSON", WrappedError: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sendURL, bytes.NewReader(body))
	if err != nil {
		return nil, mautrix.HTTPError{Message: "failed to create request", WrappedError: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if cli.UserAgent != "" {
		req.Header.Set("User-Agent", cli.UserAgent)
	}
	if cli.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+cli.AccessToken)
	}
	cli.RequestStart(req)
	start := time.Now()
	res, err := cli.Client.Do(req)
	duration := time.Since(start)
	if res != nil {
		defer res.Body.Close()
	}
	if err != nil {
		err = mautrix.HTTPError{Request: req, Response: res, Message: "request error", WrappedError: err}
		logSendDone(ctx, cli, req, res, err, nil, body, 0, duration)
		return nil, err
	}
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		got, err := mautrix.ParseErrorResponse(req, res)
		logSendDone(ctx, cli, req, res, nil, nil, body, len(got), duration)
		return nil, err
	}
	var resp *mautrix.RespSendEvent
	got, err := readSendResponse(req, res, cli.ResponseSizeLimit)
	if err == nil {
		if err = json.Unmarshal(got, &resp); err != nil {
			err = mautrix.HTTPError{Request: req, Response: res, Message: "failed to unmarshal response body",
				ResponseBody: string(got), WrappedError: err}
			got = nil
		}
	}
	logSendDone(ctx, cli, req, res, nil, err, body, len(got), duration)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// readSendResponse reads the body as mautrix does, within its size limit.
func readSendResponse(req *http.Request, res *http.Response, limit int64) ([]byte, error) {
	if limit == 0 {
		limit = mautrix.DefaultResponseSizeLimit
	}
	if res.ContentLength > limit {
		return nil, mautrix.HTTPError{Request: req, Response: res, Message: "not reading response",
			WrappedError: fmt.Errorf("%w (%.2f MiB)", mautrix.ErrResponseTooLong, float64(res.ContentLength)/1024/1024)}
	}
	var got []byte
	var err error
	if n := res.ContentLength; n >= 0 && n < 4096 {
		// The usual answer, {"event_id":…} with its length, in one
		// buffer of its size (net/http's body ends at the length and
		// fails, as for io.ReadAll, if the connection ends before it).
		got = make([]byte, n)
		if _, err = io.ReadFull(res.Body, got); err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	} else {
		got, err = io.ReadAll(io.LimitReader(res.Body, limit+1))
		if err == nil && int64(len(got)) > limit {
			err = mautrix.ErrBodyReadReachedLimit
		}
	}
	if err != nil {
		return nil, mautrix.HTTPError{Request: req, Response: res, Message: "failed to read response body", WrappedError: err}
	}
	return got, nil
}

// logSendDone writes mautrix's line for the request (and calls its
// response hook) when anything would come of it: a failure, which it logs
// at warning or error level, debug logging, or a hook. A successful send
// with debug logging off (the usual case) skips it, and the URL it would
// render for nothing.
func logSendDone(ctx context.Context, cli *mautrix.Client, req *http.Request, res *http.Response, err, handlerErr error, body []byte, n int, duration time.Duration) {
	log := zerolog.Ctx(ctx)
	if log.GetLevel() == zerolog.Disabled || log == zerolog.DefaultContextLogger {
		log = &cli.Log
	}
	failed := err != nil || handlerErr != nil || res == nil || res.StatusCode < 200 || res.StatusCode >= 300
	debug := log.GetLevel() <= zerolog.DebugLevel && zerolog.GlobalLevel() <= zerolog.DebugLevel
	if !failed && !debug && cli.ResponseHook == nil {
		return
	}
	var logBody any = json.RawMessage(body)
	if len(body) > 32768 {
		logBody = fmt.Sprintf("<large content omitted (%d bytes)>", len(body))
	}
	logCtx := context.WithValue(log.WithContext(ctx), mautrix.LogBodyContextKey, logBody)
	cli.LogRequestDone(req.WithContext(logCtx), res, err, handlerErr, n, duration)
}
