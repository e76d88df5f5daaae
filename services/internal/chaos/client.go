package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrNoFinalAnswer is returned by Client.Write when the write got no
// final answer before its context ended: its outcome is unknown, and the
// load does not count it as acknowledged.
var ErrNoFinalAnswer = errors.New("no final answer")

// Client talks to the stack's gateway. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the gateway at base
// ("http://127.0.0.1:18080").
func NewClient(base string) *Client {
	return &Client{
		base: strings.TrimRight(base, "/"),
		// Bounded, so that a request to a process killed mid-answer is
		// retried rather than waited on forever.
		http: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
}

// Answer is a final answer to a write.
type Answer struct {
	Status int
	Body   []byte
}

// problemType returns the slug of a problem answer's type ("" if none).
func problemType(body []byte) string {
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	return p.Type[strings.LastIndex(p.Type, "/")+1:]
}

// transient reports whether an answer is one a retry with the same
// Idempotency-Key may turn into another: the API remembers only final
// answers, so a 5xx, a 429 and a contention 409 get a fresh attempt.
// retry404 also retries a 404, for a write on an order the client knows
// exists but the gateway looks up in a read model that may lag.
func transient(status int, body []byte, retry404 bool) bool {
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return true
	case status == http.StatusConflict:
		t := problemType(body)
		return t == "version-conflict" || t == "idempotency-key-in-flight"
	case status == http.StatusNotFound:
		return retry404
	}
	return false
}

// Write POSTs body to path with token and Idempotency-Key key, and
// retries with the same key on connection errors, timeouts and transient
// answers until it has a final answer (2xx or a 4xx a retry would get
// again) or ctx ends (ErrNoFinalAnswer). The same key makes every retry
// safe: an acknowledged write is never done twice.
func (c *Client) Write(ctx context.Context, token, path, body, key string, retry404 bool) (Answer, int, error) {
	delay := 50 * time.Millisecond
	var last string
	for attempt := 1; ; attempt++ {
		status, resBody, header, err := c.do(ctx, http.MethodPost, path, token, body, key)
		switch {
		case err != nil:
			last = err.Error()
		case !transient(status, resBody, retry404):
			return Answer{Status: status, Body: resBody}, attempt - 1, nil
		default:
			last = fmt.Sprintf("%d %s", status, bytes.TrimSpace(resBody))
		}
		wait := delay
		if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, 2*time.Second)
		}
		delay = min(delay*2, time.Second)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Answer{}, attempt, fmt.Errorf("POST %s (key %s): %w after %d attempts; last: %s", path, key, ErrNoFinalAnswer, attempt, last)
		case <-t.C:
		}
	}
}

// GetJSON GETs path with token and decodes a 200 answer into v; any other
// answer is an error naming its status.
func (c *Client) GetJSON(ctx context.Context, token, path string, v any) error {
	status, body, _, err := c.do(ctx, http.MethodGet, path, token, "", "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}

// GetRetry is GetJSON retried until it succeeds or ctx ends, for reads
// made while processes may still be starting again.
func (c *Client) GetRetry(ctx context.Context, token, path string, v any) error {
	for {
		err := c.GetJSON(ctx, token, path, v)
		if err == nil {
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// List reads every page of the list at path, 500 items a page.
func List[T any](ctx context.Context, c *Client, token, path string) ([]T, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var items []T
	after := ""
	for {
		var page struct {
			Items []T    `json:"items"`
			Next  string `json:"next"`
		}
		p := path + sep + "limit=500"
		if after != "" {
			p += "&after=" + url.QueryEscape(after)
		}
		if err := c.GetRetry(ctx, token, p, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.Next == "" {
			return items, nil
		}
		after = page.Next
	}
}

func (c *Client) do(ctx context.Context, method, path, token, body, key string) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, b, res.Header, nil
}
