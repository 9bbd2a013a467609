package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/fjordhq/fjord/storage"
)

// AddSigningKeyRequest is the body of POST /v1/signkeys.
type AddSigningKeyRequest struct {
	Name string `json:"name"`
	// Public is the key file's content: an armored OpenPGP public key or
	// one SSH public key line.
	Public string `json:"public"`
}

func (s *Server) signKeyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/signkeys", s.listSigningKeys)
	mux.HandleFunc("POST /v1/signkeys", s.addSigningKey)
	mux.HandleFunc("DELETE /v1/signkeys", s.deleteSigningKey)
}

func (s *Server) listSigningKeys(w http.ResponseWriter, _ *http.Request) {
	ks, err := s.store.SigningKeys()
	if err != nil {
		s.fail(w, err)
		return
	}
	if ks == nil {
		ks = []storage.SigningKey{}
	}
	writeJSON(w, http.StatusOK, ks)
}

func (s *Server) addSigningKey(w http.ResponseWriter, r *http.Request) {
	var req AddSigningKeyRequest
	if !decode(w, r, &req) {
		return
	}
	k, err := storage.ParseSigningKey(req.Name, []byte(req.Public))
	if err != nil {
		// What is wrong is the file the user gave, not the server.
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if k, err = s.store.AddSigningKey(k); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

func (s *Server) deleteSigningKey(w http.ResponseWriter, r *http.Request) {
	err := s.store.DeleteSigningKey(r.URL.Query().Get("name"))
	if errors.Is(err, storage.ErrSigningKeyInUse) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SigningKeys lists the keys fjord trusts for commit signatures.
func (c *Client) SigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	var out []storage.SigningKey
	return out, c.do(ctx, http.MethodGet, "/v1/signkeys", nil, &out)
}

// AddSigningKey adds a trusted key from the content of its public key
// file and returns it with its fingerprint.
func (c *Client) AddSigningKey(ctx context.Context, name string, public []byte) (storage.SigningKey, error) {
	var out storage.SigningKey
	return out, c.do(ctx, http.MethodPost, "/v1/signkeys", AddSigningKeyRequest{Name: name, Public: string(public)}, &out)
}

// DeleteSigningKey removes a trusted key; it is refused while a project's
// signatureKeys name it.
func (c *Client) DeleteSigningKey(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/signkeys?name="+url.QueryEscape(name), nil, nil)
}
