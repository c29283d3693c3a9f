package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sanping/sanping/protocol"
)

// StatusError is an answer of the server other than the one expected.
type StatusError struct {
	Code   int
	Detail string // the problem's detail, or the start of the body
}

func (e *StatusError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("server answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("server answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Detail)
}

// Temporary: worth trying again (after a HEAD for the offset, if it was a PATCH). 409 is an
// offset that disagrees with the server's; 423 an upload still locked by a cut request.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusConflict || e.Code == http.StatusLocked || e.Code == http.StatusTooManyRequests
}

// errGone: the server does not know the upload (expired, or its state was lost): create it again.
var errGone = errors.New("upload not found on the server")

// retryable reports whether err is a network error or a temporary answer.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return !errors.Is(err, errGone)
}

// tusClient speaks the tus 1.0 core protocol to the server's /api/uploads/.
type tusClient struct {
	endpoint *url.URL
	token    string
	hc       *http.Client
	stall    time.Duration
	sent     *atomic.Int64 // body bytes handed to the connection
}

func (c *tusClient) request(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+c.token)
	return req, nil
}

// do sends req and checks the status; the body is read and closed.
func (c *tusClient) do(req *http.Request, want int) (*http.Response, []byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode == http.StatusNotFound && req.Method != http.MethodPost {
		return nil, nil, errGone
	}
	if resp.StatusCode != want {
		return nil, nil, &StatusError{Code: resp.StatusCode, Detail: problemDetail(body)}
	}
	return resp, body, nil
}

func problemDetail(body []byte) string {
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// create makes an upload of size bytes and returns its URL.
func (c *tusClient) create(ctx context.Context, size int64, name string) (string, error) {
	req, err := c.request(ctx, http.MethodPost, c.endpoint.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", "filename "+b64(name))
	resp, _, err := c.do(req, http.StatusCreated)
	if err != nil {
		return "", err
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "", fmt.Errorf("the server created an upload without a usable Location (%q)", resp.Header.Get("Location"))
	}
	return loc.String(), nil
}

// head gives the server's offset, and the result's URL when the upload is ingested.
func (c *tusClient) head(ctx context.Context, u string) (int64, string, error) {
	req, err := c.request(ctx, http.MethodHead, u, nil)
	if err != nil {
		return 0, "", err
	}
	resp, _, err := c.do(req, http.StatusOK)
	if err != nil {
		return 0, "", err
	}
	return c.offsetAndResult(resp)
}

// patch sends n bytes of r from off. The final PATCH is answered once the server has
// ingested the upload, with the result's URL.
func (c *tusClient) patch(ctx context.Context, u string, r io.ReaderAt, off, n int64) (int64, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A link that stops moving (4G) is cut here rather than waited on for minutes.
	body := &watchedReader{r: io.NewSectionReader(r, off, n), sent: c.sent, timer: time.AfterFunc(c.stall, cancel), stall: c.stall}
	defer body.timer.Stop()
	req, err := c.request(ctx, http.MethodPatch, u, body)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, _, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return 0, "", err
	}
	return c.offsetAndResult(resp)
}

func (c *tusClient) offsetAndResult(resp *http.Response) (int64, string, error) {
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("the server sent no Upload-Offset: %w", err)
	}
	res := resp.Header.Get("Upload-Result")
	if res != "" {
		u, err := resp.Request.URL.Parse(res)
		if err != nil {
			return 0, "", fmt.Errorf("bad Upload-Result %q: %w", res, err)
		}
		res = u.String()
	}
	return off, res, nil
}

// serverResult is the server's result of an upload.
type serverResult = protocol.UploadResult

func (c *tusClient) result(ctx context.Context, u string) (*serverResult, error) {
	req, err := c.request(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	_, body, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var r serverResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("reading the upload's result: %w", err)
	}
	return &r, nil
}

// watchedReader counts what the transport reads and pushes back the stall deadline.
type watchedReader struct {
	r     io.Reader
	sent  *atomic.Int64
	timer *time.Timer
	stall time.Duration
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.sent.Add(int64(n))
	if err == io.EOF {
		// The body is out; the answer may wait for ingestion.
		w.timer.Stop()
	} else {
		w.timer.Reset(w.stall)
	}
	return n, err
}
