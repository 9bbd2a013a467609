package admin

import (
	"bytes"
	"context"
	"net/http"
	"strings"

	"github.com/fjordhq/fjord/ha"
)

// Replicas is the replica group this server is a member of, as the admin
// API needs it. Nil means the server runs alone (no --ha).
type Replicas interface {
	// Status reports the group as this member sees it from the Leases:
	// the primary, each member's role, position and lag, and why the
	// group is read-only when it is (`fjord replicas`).
	Status(ctx context.Context) (ha.Status, error)
	// Promote lets member id take over although it may lack
	// acknowledged changes; it refuses without force and while a primary
	// holds the Lease (`fjord replicas promote ID --force`).
	Promote(ctx context.Context, id string, force bool) error
}

// PromoteRequest asks to let a member take over without the synchronous
// guarantee.
type PromoteRequest struct {
	ID    string `json:"id"`
	Force bool   `json:"force"`
}

// readOnly says whether a request writes nothing to the store, so that a
// replica answers it too: reads, and the POSTs that carry a body but only
// read (a backup) or act on the Leases (promote).
func readOnly(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return true
	case r.Method != http.MethodPost:
		return false
	}
	switch r.URL.Path {
	case "/v1/backup", "/v1/replicas/promote":
		return true
	}
	return false
}

// gate refuses requests that would write on a member that is not the
// primary, with the message WriteGate gives (it names the primary). On the
// primary it holds a write's answer until Durable says the synchronous
// replicas hold it, as a push's report is held.
func (s *Server) gate(next http.Handler) http.Handler {
	if s.writeGate == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if readOnly(r) {
			next.ServeHTTP(w, r)
			return
		}
		if err := s.writeGate(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error()+"; run this command on the primary (kubectl exec into the pod `fjord replicas` names)")
			return
		}
		if s.durable == nil {
			next.ServeHTTP(w, r)
			return
		}
		held := &heldResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(held, r)
		if held.status < 300 {
			if err := s.durable(r.Context()); err != nil {
				writeError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		for k, v := range held.header {
			w.Header()[k] = v
		}
		w.WriteHeader(held.status)
		w.Write(held.body.Bytes())
	})
}

// heldResponse keeps a handler's answer until the gate releases it.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header         { return h.header }
func (h *heldResponse) WriteHeader(status int)      { h.status = status }
func (h *heldResponse) Write(b []byte) (int, error) { return h.body.Write(b) }

func (s *Server) replicaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/replicas", s.getReplicas)
	mux.HandleFunc("POST /v1/replicas/promote", s.promoteReplica)
}

const aloneMsg = "this fjord runs alone: start it with --ha NAMESPACE/NAME (see README, High availability) to run a replica group"

func (s *Server) getReplicas(w http.ResponseWriter, r *http.Request) {
	if s.replicas == nil {
		writeError(w, http.StatusNotFound, aloneMsg)
		return
	}
	st, err := s.replicas.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "replica status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) promoteReplica(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if !decode(w, r, &req) {
		return
	}
	if s.replicas == nil {
		writeError(w, http.StatusNotFound, aloneMsg)
		return
	}
	if strings.TrimSpace(req.ID) == "" {
		writeError(w, http.StatusBadRequest, "promote: name the member, e.g. fjord replicas promote fjord-1 --force")
		return
	}
	if err := s.replicas.Promote(r.Context(), req.ID, req.Force); err != nil {
		writeError(w, http.StatusConflict, "promote "+req.ID+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"promoted": req.ID})
}

// Replicas returns the replica group as the server sees it.
func (c *Client) Replicas(ctx context.Context) (ha.Status, error) {
	var st ha.Status
	return st, c.do(ctx, http.MethodGet, "/v1/replicas", nil, &st)
}

// Promote lets member id take over the group's primary Lease without the
// synchronous guarantee.
func (c *Client) Promote(ctx context.Context, id string, force bool) error {
	return c.do(ctx, http.MethodPost, "/v1/replicas/promote", PromoteRequest{ID: id, Force: force}, nil)
}
