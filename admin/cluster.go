package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/fjordhq/fjord/storage"
)

// Clusters is what the admin API needs of the reconciler for clusters.
type Clusters interface {
	// AddCluster checks that the cluster answers with creds and stores
	// it; an existing name is refused unless replace. It returns the
	// server's Kubernetes version.
	AddCluster(ctx context.Context, c storage.Cluster, creds storage.ClusterCredentials, replace bool) (version string, err error)
	// DeleteCluster removes a cluster no app deploys to.
	DeleteCluster(ctx context.Context, name string) error
	// ClusterState is what fjord knows of a cluster's API server now:
	// its URL (for in-cluster, the kubeconfig's), a storage.Cluster*
	// state and the last error.
	ClusterState(name string) (server, state, lastError string)
	// IsClusterRefused reports whether err is the caller's to fix (bad
	// material, unreachable server): 400, not 500.
	IsClusterRefused(err error) bool
}

// AddClusterRequest is the body of POST /v1/clusters. It carries
// secrets: it travels only over the admin socket (0600) and is never
// logged or echoed.
type AddClusterRequest struct {
	// Cluster holds the name, server and TLS settings; its Credentials
	// are ignored (they follow from the fields below).
	Cluster storage.Cluster `json:"cluster"`
	// CA, Cert and Key are PEM; Token a bearer token.
	CA    []byte `json:"ca,omitempty"`
	Cert  []byte `json:"cert,omitempty"`
	Key   []byte `json:"key,omitempty"`
	Token string `json:"token,omitempty"`
	// Replace updates a cluster of the same name instead of refusing.
	Replace bool `json:"replace,omitempty"`
}

// ClusterStatus is one row of `fjord cluster list`: no secret, only the
// names of the credential files.
type ClusterStatus struct {
	storage.Cluster
	// Apps are the apps that deploy to it.
	Apps []string `json:"apps"`
	// State is Connected, Unreachable or Unknown.
	State     string `json:"state"`
	LastError string `json:"lastError,omitempty"`
	// Version is the Kubernetes version, on add.
	Version string `json:"version,omitempty"`
}

func (s *Server) clusterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/clusters", s.listClusters)
	mux.HandleFunc("POST /v1/clusters", s.addCluster)
	mux.HandleFunc("DELETE /v1/clusters", s.deleteCluster)
}

func (s *Server) needClusters(w http.ResponseWriter) bool {
	if s.clusters == nil {
		writeError(w, http.StatusServiceUnavailable, "the reconciler is not running on this server, and clusters are its: start `fjord serve` with --kubeconfig FILE (or KUBECONFIG, or in a cluster)")
		return false
	}
	return true
}

func (s *Server) clusterStatus(c storage.Cluster) (ClusterStatus, error) {
	st := ClusterStatus{Cluster: c, State: storage.ClusterUnknown}
	apps, err := s.store.AppsOnCluster(c.Name)
	if err != nil {
		return st, err
	}
	if apps == nil {
		apps = []string{}
	}
	st.Apps = apps
	if s.clusters != nil {
		server, state, lastErr := s.clusters.ClusterState(c.Name)
		if st.Server == "" {
			st.Server = server
		}
		st.State, st.LastError = state, lastErr
	}
	return st, nil
}

func (s *Server) listClusters(w http.ResponseWriter, _ *http.Request) {
	cs, err := s.store.Clusters()
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []ClusterStatus{}
	if s.clusters != nil {
		// fjord's own cluster first, as Argo CD lists it.
		st := ClusterStatus{Cluster: storage.Cluster{Name: storage.InClusterName, Source: "fjord serve's kubeconfig"}, Apps: []string{}}
		apps, err := s.store.AppsOnCluster("")
		if err != nil {
			s.fail(w, err)
			return
		}
		if apps != nil {
			st.Apps = apps
		}
		st.Server, st.State, st.LastError = s.clusters.ClusterState(storage.InClusterName)
		out = append(out, st)
	}
	for _, c := range cs {
		st, err := s.clusterStatus(c)
		if err != nil {
			s.fail(w, err)
			return
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addCluster(w http.ResponseWriter, r *http.Request) {
	if !s.needClusters(w) {
		return
	}
	var req AddClusterRequest
	if !decode(w, r, &req) {
		return
	}
	creds := storage.ClusterCredentials{CA: req.CA, Cert: req.Cert, Key: req.Key, Token: req.Token}
	version, err := s.clusters.AddCluster(r.Context(), req.Cluster, creds, req.Replace)
	if err != nil {
		if s.clusters.IsClusterRefused(err) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.fail(w, err)
		return
	}
	c, err := s.store.Cluster(req.Cluster.Name)
	if err != nil {
		s.fail(w, err)
		return
	}
	st, err := s.clusterStatus(c)
	if err != nil {
		s.fail(w, err)
		return
	}
	st.Version = version
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	if !s.needClusters(w) {
		return
	}
	err := s.clusters.DeleteCluster(r.Context(), r.URL.Query().Get("name"))
	if errors.Is(err, storage.ErrClusterInUse) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		if s.clusters.IsClusterRefused(err) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Clusters lists the clusters (fjord's own first) with their apps and
// state.
func (c *Client) Clusters(ctx context.Context) ([]ClusterStatus, error) {
	var out []ClusterStatus
	return out, c.do(ctx, http.MethodGet, "/v1/clusters", nil, &out)
}

// AddCluster checks and stores a cluster.
func (c *Client) AddCluster(ctx context.Context, req AddClusterRequest) (ClusterStatus, error) {
	var out ClusterStatus
	return out, c.do(ctx, http.MethodPost, "/v1/clusters", req, &out)
}

// DeleteCluster removes a cluster; it is refused while apps deploy to it.
func (c *Client) DeleteCluster(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/clusters?name="+url.QueryEscape(name), nil, nil)
}
