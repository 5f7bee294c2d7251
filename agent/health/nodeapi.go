package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
)

// Credentials returns the node's API e-mail and password, held in the daemon's memory (from Secrets Manager and
// node.api_email); ok is false while it has none. The password is sent to the node only: never logged, never
// written, never put into an error.
type Credentials func() (email, password string, ok bool)

// errLoginRateLimited: the node answered 429 to a login. It limits unauthenticated requests per client
// ([WebServer.RateLimit] Unauthenticated, 5 per 20s by default): try again after that period.
var errLoginRateLimited = errors.New("the node limits logins (429); try again later")

// errRefused: the node answered 401 to a login.
var errRefused = errors.New("the node refused the API credentials (401)")

// errNoCredentials means the daemon holds no API credentials yet.
var errNoCredentials = errors.New("no API credentials yet")

// NodeAPI is a session with the node's own API (the operator UI's): it logs in with POST /sessions and keeps
// the session cookie; on 401 it logs in again once. Safe for concurrent use by several checks.
type NodeAPI struct {
	base   string
	creds  Credentials
	client *http.Client
	mu     sync.Mutex // one login at a time
}

// NewNodeAPI returns a session with the node at baseURL (http://127.0.0.1:<host_port>).
func NewNodeAPI(baseURL string, creds Credentials) *NodeAPI {
	c := newHTTPClient()
	c.Jar, _ = cookiejar.New(nil) // cookiejar.New never fails without options
	return &NodeAPI{base: strings.TrimRight(baseURL, "/"), creds: creds, client: c}
}

// getJSON does GET path with the session and decodes the answer into out; a 401 logs in again and retries once.
func (a *NodeAPI) getJSON(ctx context.Context, path string, out any) error {
	code, body, err := get(ctx, a.client, a.base+path)
	if err == nil && code == http.StatusUnauthorized {
		if err := a.login(ctx); err != nil {
			return err
		}
		code, body, err = get(ctx, a.client, a.base+path)
	}
	switch {
	case err != nil:
		return fmt.Errorf("GET %s: %w", path, err)
	case code != http.StatusOK:
		return fmt.Errorf("GET %s answered %d: %s", path, code, apiErrorDetail(body))
	}
	return decode(body, path, out)
}

// login opens a session. The request body holds the password, so neither it nor the answer goes into an error.
func (a *NodeAPI) login(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	email, password, ok := a.creds()
	if !ok {
		return fmt.Errorf("log in to the node's API: %w", errNoCredentials)
	}
	code, _, err := a.sendJSON(ctx, http.MethodPost, "/sessions", map[string]string{"email": email, "password": password})
	switch {
	case err != nil:
		return fmt.Errorf("log in to the node's API: %w", err)
	case code == http.StatusUnauthorized:
		return fmt.Errorf("log in to the node's API: %w", errRefused)
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("log in to the node's API: %w", errLoginRateLimited)
	case code != http.StatusOK:
		return fmt.Errorf("log in to the node's API: POST /sessions answered %d", code)
	}
	return nil
}

// sendJSON sends body as JSON with the session and returns the answer. The body may hold a password: the error
// names the request, never the body.
func (a *NodeAPI) sendJSON(ctx context.Context, method, path string, body any) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(a.client, req)
}

// apiErrorDetail is the first error of a JSON:API error document, or a note that there was none.
func apiErrorDetail(body []byte) string {
	var doc struct {
		Errors []struct {
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil && len(doc.Errors) > 0 {
		return oneLine(doc.Errors[0].Detail, 200)
	}
	return "no error detail"
}
