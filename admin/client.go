package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/fjordhq/fjord/storage"
)

// ErrNoServer is returned when no fjord server answers on the data dir.
var ErrNoServer = errors.New("no fjord server is running")

// Client talks to the admin API of the server running on a data dir.
type Client struct {
	dataDir string
	socket  string
	http    *http.Client
}

// NewClient returns a client for the server whose data dir is dataDir. It
// does not connect until the first call.
func NewClient(dataDir string) *Client {
	socket := filepath.Join(dataDir, SocketName)
	return &Client{
		dataDir: dataDir,
		socket:  socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// do sends a request and decodes the JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.stream(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("admin API: decode %s %s: %w", method, path, err)
	}
	return nil
}

// stream sends a request and returns the successful response, whose body
// the caller reads and closes; an error status is returned as *APIError.
func (c *Client) stream(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://fjord"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			abs, _ := filepath.Abs(c.dataDir)
			return nil, fmt.Errorf("%w on data dir %s (nothing answers on %s): start one with `fjord serve --data %s`, or pass the server's --data / FJORD_DATA", ErrNoServer, abs, c.socket, c.dataDir)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cannot open %s: %w (run as the user that runs `fjord serve`)", c.socket, err)
		}
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e errorBody
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

func queryEscape(s string) string { return url.QueryEscape(s) }

// APIError is an error answered by the server.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Info returns what the server says about itself.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	return i, c.do(ctx, http.MethodGet, "/v1/info", nil, &i)
}

// Repos lists repos with their head.
func (c *Client) Repos(ctx context.Context) ([]RepoStatus, error) {
	var out []RepoStatus
	return out, c.do(ctx, http.MethodGet, "/v1/repos", nil, &out)
}

// CreateRepo creates an empty repo.
func (c *Client) CreateRepo(ctx context.Context, req CreateRepoRequest) (storage.Repo, error) {
	var r storage.Repo
	return r, c.do(ctx, http.MethodPost, "/v1/repos", req, &r)
}

// UpdateRepo changes a repo's settings.
func (c *Client) UpdateRepo(ctx context.Context, name string, req UpdateRepoRequest) (storage.Repo, error) {
	var r storage.Repo
	return r, c.do(ctx, http.MethodPatch, "/v1/repos/"+url.PathEscape(name), req, &r)
}

// DeleteRepo deletes a repo and everything in it. Unless force, it is
// refused while an app uses the repo.
func (c *Client) DeleteRepo(ctx context.Context, name string, force bool) error {
	return c.do(ctx, http.MethodDelete, "/v1/repos/"+url.PathEscape(name)+"?force="+strconv.FormatBool(force), nil, nil)
}

// Users lists users.
func (c *Client) Users(ctx context.Context) ([]storage.User, error) {
	var out []storage.User
	return out, c.do(ctx, http.MethodGet, "/v1/users", nil, &out)
}

// CreateUser adds a user.
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (storage.User, error) {
	var u storage.User
	return u, c.do(ctx, http.MethodPost, "/v1/users", req, &u)
}

// DeleteUser removes a user, their keys and grants.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(name), nil, nil)
}

// Grants lists grants.
func (c *Client) Grants(ctx context.Context) ([]storage.Grant, error) {
	var out []storage.Grant
	return out, c.do(ctx, http.MethodGet, "/v1/grants", nil, &out)
}

// SetGrant sets a user's access to a repo ("none" removes it).
func (c *Client) SetGrant(ctx context.Context, g storage.Grant) (storage.Grant, error) {
	var out storage.Grant
	return out, c.do(ctx, http.MethodPut, "/v1/grants", g, &out)
}
