package reconciler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fjordhq/fjord/storage"
)

// ErrNoCluster is returned by LoadRESTConfig when no kubeconfig is given
// and fjord does not run in a cluster.
var ErrNoCluster = errors.New("no kubeconfig: neither --kubeconfig, KUBECONFIG nor an in-cluster service account")

// LoadRESTConfig finds the cluster to deploy to, in this order: the file
// given (the --kubeconfig flag), $KUBECONFIG, the in-cluster service
// account. ~/.kube/config is deliberately not read: a developer's
// `fjord serve` must not start deploying to whatever cluster their shell
// points at. source says which was used, for the start-up log line.
func LoadRESTConfig(kubeconfig string) (cfg *rest.Config, source string, err error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
		source = "KUBECONFIG"
	} else {
		source = "--kubeconfig"
	}
	if kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
		if source == "KUBECONFIG" {
			rules = &clientcmd.ClientConfigLoadingRules{Precedence: splitList(kubeconfig)}
		}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("%s %s: %w", source, kubeconfig, err)
		}
		return cfg, source + " " + kubeconfig, nil
	}
	cfg, err = rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, "", ErrNoCluster
	}
	if err != nil {
		return nil, "", fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, "in-cluster service account", nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range filepath.SplitList(s) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ErrClusterConfig marks cluster material fjord refuses (a kubeconfig or
// an Argo CD cluster Secret); the message names the problem and the fix.
var ErrClusterConfig = errors.New("cluster config refused")

// ClusterFromKubeconfig reads the cluster, user and context of a
// kubeconfig file (context "" is its current-context) and returns what
// fjord stores of it: the server, and the CA, client certificate and key
// or bearer token, with files the kubeconfig names read in. Credentials
// that run a program (exec, auth-provider) are refused: a server must not
// depend on a developer's login helper. Errors never hold a secret.
func ClusterFromKubeconfig(path, context string) (storage.Cluster, storage.ClusterCredentials, error) {
	raw, err := clientcmd.LoadFromFile(path)
	if err == nil {
		// Files the kubeconfig names are relative to it, as kubectl reads them.
		err = clientcmd.ResolveLocalPaths(raw)
	}
	if err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: read kubeconfig %s: %w", ErrClusterConfig, path, err)
	}
	if context == "" {
		context = raw.CurrentContext
		if context == "" {
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: kubeconfig %s has no current-context: name one with --context (it has %s)", ErrClusterConfig, path, contextNames(raw))
		}
	}
	kctx, ok := raw.Contexts[context]
	if !ok {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: kubeconfig %s has no context %q: use one of %s", ErrClusterConfig, path, context, contextNames(raw))
	}
	if au, ok := raw.AuthInfos[kctx.AuthInfo]; ok {
		switch {
		case au.Exec != nil:
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: context %q: user %q runs %q to get a credential (exec), which fjord does not run: give fjord a service-account token or a client certificate instead (kubectl create token, or a kubeconfig made for fjord)", ErrClusterConfig, context, kctx.AuthInfo, au.Exec.Command)
		case au.AuthProvider != nil:
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: context %q: user %q uses the %s auth-provider, which fjord does not run: give fjord a service-account token or a client certificate instead", ErrClusterConfig, context, kctx.AuthInfo, au.AuthProvider.Name)
		case au.Username != "" || au.Password != "":
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: context %q: user %q has a user name and password (basic auth), which fjord does not store: give it a token or a client certificate", ErrClusterConfig, context, kctx.AuthInfo)
		}
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, context, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: kubeconfig %s context %q: %w", ErrClusterConfig, path, context, err)
	}
	c := storage.Cluster{Server: cfg.Host, TLSServerName: cfg.ServerName, Insecure: cfg.Insecure, Source: fmt.Sprintf("kubeconfig %s context %s", path, context)}
	var creds storage.ClusterCredentials
	read := func(data []byte, file, what string) ([]byte, error) {
		if len(data) > 0 || file == "" {
			return data, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: context %q: read its %s: %w", ErrClusterConfig, context, what, err)
		}
		return b, nil
	}
	if creds.CA, err = read(cfg.CAData, cfg.CAFile, "certificate-authority"); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, err
	}
	if creds.Cert, err = read(cfg.CertData, cfg.CertFile, "client-certificate"); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, err
	}
	if creds.Key, err = read(cfg.KeyData, cfg.KeyFile, "client-key"); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, err
	}
	token, err := read([]byte(cfg.BearerToken), cfg.BearerTokenFile, "tokenFile")
	if err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, err
	}
	creds.Token = strings.TrimSpace(string(token))
	if err := checkClusterMaterial(c, creds); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: kubeconfig %s context %q: %w", ErrClusterConfig, path, context, err)
	}
	return c, creds, nil
}

func contextNames(cfg *clientcmdapi.Config) string {
	var names []string
	for n := range cfg.Contexts {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "no context at all"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkClusterMaterial refuses what cannot work: no server, a server
// that is not https, half a client certificate, no credential at all.
func checkClusterMaterial(c storage.Cluster, creds storage.ClusterCredentials) error {
	u, err := url.Parse(c.Server)
	// The server is never printed before u.User is known to be empty:
	// https://admin:PASSWORD@host would put the password in the error.
	switch {
	case c.Server == "":
		return errors.New("no server URL")
	case err != nil && strings.Contains(c.Server, "@"):
		// url.Error repeats the URL, and what is before the @ may be a
		// password.
		return errors.New("server is not a URL and holds a user name or password (not shown): give https://HOST[:PORT] and a token or client certificate")
	case err != nil:
		return fmt.Errorf("server %q is not a URL: %w", c.Server, err)
	case u.User != nil:
		return fmt.Errorf("server URL %s holds a user name or password: remove it and give a token or client certificate", u.Redacted())
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("server %q: want https://HOST[:PORT]", c.Server)
	case isInClusterServer(c.Server):
		return fmt.Errorf("server %s is fjord's own cluster (in-cluster): apps reach it with destination.name: %s, no cluster to add", c.Server, InClusterName)
	case (len(creds.Cert) > 0) != (len(creds.Key) > 0):
		return errors.New("a client certificate needs both its certificate and its key")
	case len(creds.Cert) == 0 && creds.Token == "":
		return errors.New("no credential: give a bearer token or a client certificate and key")
	}
	if len(creds.CA) > 0 {
		if _, err := certutil.ParseCertsPEM(creds.CA); err != nil {
			return fmt.Errorf("certificate-authority: not PEM certificates: %w", err)
		}
	}
	if len(creds.Cert) > 0 {
		if _, err := tls.X509KeyPair(creds.Cert, creds.Key); err != nil {
			// tls's errors name the problem, never the key's bytes.
			return fmt.Errorf("client certificate and key do not make a pair: %w", err)
		}
	}
	return nil
}

// isInClusterServer reports whether server is Argo CD's name of the
// cluster fjord runs in.
func isInClusterServer(server string) bool {
	return server == InClusterServer || server == InClusterServer+":443" || server == InClusterServer+"/"
}

// Argo CD's declarative cluster Secrets
// (operator-manual/declarative-setup, "Clusters").
const (
	// LabelSecretType set to SecretTypeCluster marks a cluster Secret.
	LabelSecretType   = "argocd.argoproj.io/secret-type"
	SecretTypeCluster = "cluster"
)

// IsClusterSecret reports whether a document is an Argo CD cluster
// Secret (kind Secret with the secret-type label "cluster").
func IsClusterSecret(data []byte) bool {
	var s struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(data, &s); err != nil {
		return false
	}
	return s.Kind == "Secret" && s.APIVersion == "v1" && s.Metadata.Labels[LabelSecretType] == SecretTypeCluster
}

// argoClusterConfig is the config key of a cluster Secret.
type argoClusterConfig struct {
	BearerToken     string `json:"bearerToken,omitempty"`
	TLSClientConfig struct {
		Insecure   bool   `json:"insecure,omitempty"`
		ServerName string `json:"serverName,omitempty"`
		CAData     []byte `json:"caData,omitempty"`
		CertData   []byte `json:"certData,omitempty"`
		KeyData    []byte `json:"keyData,omitempty"`
	} `json:"tlsClientConfig"`
	Username           string `json:"username,omitempty"`
	Password           string `json:"password,omitempty"`
	ExecProviderConfig any    `json:"execProviderConfig,omitempty"`
	AWSAuthConfig      any    `json:"awsAuthConfig,omitempty"`
}

// ClusterFromSecret reads an Argo CD cluster Secret: data (base64) or
// stringData with name, server and config (JSON: bearerToken,
// tlsClientConfig with caData, certData, keyData, insecure, serverName).
// The cluster's name is data.name, else the Secret's name. Credentials
// that run a program (execProviderConfig, awsAuthConfig) or basic auth
// are refused, and so is project (project-scoped clusters). Errors never
// hold a secret.
func ClusterFromSecret(doc []byte) (storage.Cluster, storage.ClusterCredentials, error) {
	var s struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Type       string            `json:"type"`
		Data       map[string][]byte `json:"data"`
		StringData map[string]string `json:"stringData"`
	}
	if err := yaml.Unmarshal(doc, &s); err != nil {
		// yaml's errors quote a line and column, not the values: but a
		// Secret's values are secrets, so say only that it does not parse.
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: the Secret does not parse as a Kubernetes Secret (check its YAML, and that data values are base64)", ErrClusterConfig)
	}
	where := fmt.Sprintf("Secret %q", s.Metadata.Name)
	if s.Kind != "Secret" || s.Metadata.Labels[LabelSecretType] != SecretTypeCluster {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s is not an Argo CD cluster Secret: it needs kind Secret and the label %s: %s", ErrClusterConfig, where, LabelSecretType, SecretTypeCluster)
	}
	fields := map[string]string{}
	for k, v := range s.Data {
		fields[k] = string(v)
	}
	for k, v := range s.StringData {
		fields[k] = v // stringData wins, as the API server merges it
	}
	for k := range fields {
		switch k {
		case "name", "server", "config":
		case "shard":
			// Which Argo CD controller replica manages the cluster: fjord
			// runs one reconciler per group, so there is nothing to pick.
		case "namespaces", "clusterResources":
			// Argo CD then manages only those namespaces (and cluster-scoped
			// objects only when clusterResources is true): ignoring that
			// would let apps write where the Secret forbids.
			if strings.TrimSpace(fields[k]) != "" {
				return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: %s: fjord does not limit a cluster to namespaces yet: drop the key and bound what apps deploy there with an AppProject's destinations and clusterResourceWhitelist", ErrClusterConfig, where, k)
			}
		case "project":
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: project-scoped clusters are not supported: drop the project key (bound what apps deploy with the AppProject's destinations instead)", ErrClusterConfig, where)
		default:
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: key %q is not one fjord knows (name, server, config, namespaces, clusterResources, shard)", ErrClusterConfig, where, k)
		}
	}
	c := storage.Cluster{Name: fields["name"], Server: strings.TrimSpace(fields["server"]), Source: "secret " + s.Metadata.Name}
	if c.Name == "" {
		c.Name = s.Metadata.Name
	}
	var cfg argoClusterConfig
	if raw := fields["config"]; raw != "" {
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) || strings.HasPrefix(err.Error(), "json: unknown field") {
				// These name a field, never a value.
				return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: config: %w", ErrClusterConfig, where, err)
			}
			return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: config is not JSON (bearerToken, tlsClientConfig)", ErrClusterConfig, where)
		}
	}
	switch {
	case cfg.ExecProviderConfig != nil:
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: config.execProviderConfig runs a program to get a credential, which fjord does not: give a bearerToken or tlsClientConfig.certData and keyData", ErrClusterConfig, where)
	case cfg.AWSAuthConfig != nil:
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: config.awsAuthConfig is not supported: give a bearerToken or tlsClientConfig.certData and keyData", ErrClusterConfig, where)
	case cfg.Username != "" || cfg.Password != "":
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: config.username/password (basic auth) is not supported: give a bearerToken or a client certificate", ErrClusterConfig, where)
	}
	tc := cfg.TLSClientConfig
	c.Insecure, c.TLSServerName = tc.Insecure, tc.ServerName
	creds := storage.ClusterCredentials{CA: tc.CAData, Cert: tc.CertData, Key: tc.KeyData, Token: strings.TrimSpace(cfg.BearerToken)}
	if err := storage.ValidateClusterName(c.Name); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: %w", ErrClusterConfig, where, err)
	}
	if err := checkClusterMaterial(c, creds); err != nil {
		return storage.Cluster{}, storage.ClusterCredentials{}, fmt.Errorf("%w: %s: %w", ErrClusterConfig, where, err)
	}
	return c, creds, nil
}

// clusterRESTConfig is the client config of a stored cluster.
func clusterRESTConfig(c storage.Cluster, creds storage.ClusterCredentials) *rest.Config {
	return &rest.Config{
		Host:        c.Server,
		BearerToken: creds.Token,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   c.Insecure,
			ServerName: c.TLSServerName,
			CAData:     creds.CA,
			CertData:   creds.Cert,
			KeyData:    creds.Key,
		},
	}
}

// clusterCheckTimeout bounds the check that a cluster answers.
const clusterCheckTimeout = 15 * time.Second

// CheckCluster asks a cluster's API server for its version with the
// stored credentials, and says what is wrong when it does not answer:
// unreachable, a certificate it cannot verify, credentials it refuses.
func CheckCluster(ctx context.Context, c storage.Cluster, creds storage.ClusterCredentials) (version string, err error) {
	cfg := clusterRESTConfig(c, creds)
	cfg.Timeout = clusterCheckTimeout
	return checkREST(ctx, cfg, c.Server)
}

func checkREST(ctx context.Context, cfg *rest.Config, server string) (string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("cluster %s: client: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterCheckTimeout)
	defer cancel()
	// /version is readable by any authenticated user; /api checks the
	// credential is one the server accepts for real work.
	if err := dc.RESTClient().Get().AbsPath("/api").Do(ctx).Error(); err != nil {
		return "", explainClusterError(server, err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return "", explainClusterError(server, err)
	}
	return v.GitVersion, nil
}

// explainClusterError turns a failed request into what to do about it.
func explainClusterError(server string, err error) error {
	var cerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("cluster %s refuses the credential (401 Unauthorized): the token or client certificate is wrong or expired: %w", server, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("cluster %s: the credential may not read the API (403 Forbidden): bind it to a role that may: %w", server, err)
	case errors.As(err, &cerr):
		return fmt.Errorf("cluster %s: its certificate is signed by an authority fjord does not trust: give the cluster's CA (certificate-authority-data, or tlsClientConfig.caData): %w", server, err)
	case errors.As(err, &herr):
		return fmt.Errorf("cluster %s: its certificate is not valid for that host: use the name it is issued for (tls-server-name, or tlsClientConfig.serverName): %w", server, err)
	case isUnreachable(err):
		return fmt.Errorf("cluster %s is unreachable: %w", server, err)
	}
	return fmt.Errorf("cluster %s: %w", server, err)
}

// isUnreachable reports whether err means the API server did not answer
// at all (refused, reset, timed out, no route, a name that does not
// resolve): the cluster is away, as opposed to refusing a request.
func isUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var nerr net.Error
	var operr *net.OpError
	var dnserr *net.DNSError
	switch {
	case errors.As(err, &operr), errors.As(err, &dnserr):
		return true
	case errors.As(err, &nerr) && nerr.Timeout():
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// client-go flattens some transport errors into strings.
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") || strings.Contains(s, "no route to host") ||
		strings.Contains(s, "i/o timeout") || strings.Contains(s, "http2: client connection lost")
}

// AddCluster checks that a cluster answers with its credentials and
// stores it (an existing name only with replace), so that apps may name
// it in spec.destination. It returns the server's Kubernetes version. A
// replaced cluster's clients are rebuilt and its apps synced again.
func (r *Reconciler) AddCluster(ctx context.Context, c storage.Cluster, creds storage.ClusterCredentials, replace bool) (string, error) {
	if err := storage.ValidateClusterName(c.Name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrClusterConfig, err)
	}
	if err := checkClusterMaterial(c, creds); err != nil {
		return "", fmt.Errorf("%w: cluster %q: %w", ErrClusterConfig, c.Name, err)
	}
	old, err := r.store.Cluster(c.Name)
	existed := err == nil
	switch {
	case err == nil && !replace:
		return "", fmt.Errorf("cluster %q (%s): %w: delete it first, or add it again with --upsert", c.Name, old.Server, storage.ErrExists)
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return "", err
	}
	if existed && !sameServer(old.Server, c.Server) {
		// Apps that name the old URL would lose their cluster.
		if apps, err := r.store.AppsOnCluster(c.Name); err != nil {
			return "", err
		} else if len(apps) > 0 {
			return "", fmt.Errorf("%w: cluster %q: its server moves from %s to %s while apps %v deploy to it: point them at the new cluster first, or keep the server", ErrClusterConfig, c.Name, old.Server, c.Server, apps)
		}
	}
	for _, other := range r.storedClusters() {
		if other.Name != c.Name && sameServer(other.Server, c.Server) {
			return "", fmt.Errorf("%w: server %s is already cluster %q: one cluster per server, or destination.server could not tell them apart", ErrClusterConfig, c.Server, other.Name)
		}
	}
	version, err := CheckCluster(ctx, c, creds)
	if err != nil {
		return "", fmt.Errorf("%w: cluster %q not added: %w", ErrClusterUnreachable, c.Name, err)
	}
	if _, err := r.store.PutCluster(c, creds); err != nil {
		return "", err
	}
	r.log.Info("cluster added", "cluster", c.Name, "server", c.Server, "version", version, "replaced", existed)
	r.clusterChanged(c.Name)
	return version, nil
}

// ErrClusterUnreachable marks a cluster add whose check failed: the
// server did not answer, or refused the credentials.
var ErrClusterUnreachable = errors.New("cluster check failed")

// IsClusterRefused reports whether err is the caller's to fix: material
// fjord refuses, or a cluster that does not answer.
func (r *Reconciler) IsClusterRefused(err error) bool {
	return errors.Is(err, ErrClusterConfig) || errors.Is(err, ErrClusterUnreachable) || errors.Is(err, storage.ErrInvalidName)
}

// DeleteCluster removes a stored cluster, refused while an app deploys
// to it, and stops its watches.
func (r *Reconciler) DeleteCluster(_ context.Context, name string) error {
	if name == InClusterName {
		return fmt.Errorf("%w: %s is fjord's own cluster (its kubeconfig's): it cannot be deleted", ErrClusterConfig, name)
	}
	if err := r.store.DeleteCluster(name); err != nil {
		return err
	}
	r.log.Info("cluster deleted", "cluster", name)
	r.clusterChanged(name)
	return nil
}

func (r *Reconciler) storedClusters() []storage.Cluster {
	cs, err := r.store.Clusters()
	if err != nil {
		r.log.Error("read clusters", "err", err)
	}
	return cs
}

// sameServer compares API server URLs as Argo CD's destination.server
// does, but for a trailing slash and the default port.
func sameServer(a, b string) bool { return normServer(a) == normServer(b) }

func normServer(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	return strings.TrimSuffix(s, ":443")
}

// cluster is one API server fjord deploys to: its clients, rest mapper
// and watches, and what fjord knows of its health. The kubeconfig's
// cluster is named InClusterName; the others are stored clusters.
type cluster struct {
	name   string
	server string
	dyn    dynamic.Interface
	disco  discovery.DiscoveryInterface
	mapper *restmapper.DeferredDiscoveryRESTMapper

	mu      sync.Mutex
	watch   *watcher // this term's; a new one each Run
	state   string   // storage.Cluster* state
	lastErr string
	probing bool
	stopped bool
}

// newCluster builds the clients of one cluster. It sends no request.
func (r *Reconciler) newCluster(name string, cfg *rest.Config) (*cluster, error) {
	rc := rest.CopyConfig(cfg)
	// Apply bursts (hundreds of objects on a first sync, each dry-run
	// then applied) must not queue behind client-go's default 5 QPS
	// limit; the API server's own in-flight limits protect it.
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 1000, 2000
	}
	c := &cluster{name: name, server: rc.Host, state: storage.ClusterUnknown}
	requests := r.metrics.apiRequests.WithLabelValues(name)
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return observed{next: rt, n: requests, fn: func(req *http.Request, err error) { r.observe(c, req, err) }}
	})
	if r.wrapTransport != nil {
		rc.Wrap(r.wrapTransport)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: dynamic client: %w", name, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: discovery client: %w", name, err)
	}
	c.dyn, c.disco = dyn, dc
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	c.watch = newWatcher(r, c)
	return c, nil
}

// observed counts the requests sent to one cluster and tells fn how
// each went: the one place that sees every request, watches included.
type observed struct {
	next http.RoundTripper
	n    prometheus.Counter
	fn   func(*http.Request, error)
}

func (o observed) RoundTrip(req *http.Request) (*http.Response, error) {
	o.n.Inc()
	resp, err := o.next.RoundTrip(req)
	o.fn(req, err)
	return resp, err
}

// watcher returns the cluster's watches of the running term.
func (c *cluster) watcher() *watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

// stop ends the cluster's watches and probes.
func (c *cluster) stop() {
	c.mu.Lock()
	c.stopped = true
	w := c.watch
	c.mu.Unlock()
	w.stop()
}

// start gives a stopped cluster new watches (informers cannot be run
// again once stopped); what a sync finds there is its state again.
func (c *cluster) start(r *Reconciler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		return
	}
	c.stopped = false
	c.state, c.lastErr = storage.ClusterUnknown, ""
	c.watch = newWatcher(r, c)
}

// status returns the cluster's state and last error.
func (c *cluster) status() (state, lastErr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.lastErr
}

// ClusterState is what fjord knows of a cluster now: its server, state
// (storage.ClusterConnected, ClusterUnreachable, ClusterUnknown) and the
// last error. A stored cluster no app has used yet is Unknown.
func (r *Reconciler) ClusterState(name string) (server, state, lastErr string) {
	r.clustersMu.Lock()
	c := r.clusters[name]
	r.clustersMu.Unlock()
	if c == nil {
		if sc, err := r.store.Cluster(name); err == nil {
			return sc.Server, storage.ClusterUnknown, ""
		}
		return "", storage.ClusterUnknown, ""
	}
	state, lastErr = c.status()
	return c.server, state, lastErr
}

// clusterChanged forgets the clients of a cluster that was added again
// or deleted (the next use builds them from storage) and syncs its apps.
func (r *Reconciler) clusterChanged(name string) {
	r.clustersMu.Lock()
	c := r.clusters[name]
	delete(r.clusters, name)
	r.clustersMu.Unlock()
	if c != nil {
		c.stop()
	}
	for _, st := range r.appsOn(name) {
		r.enqueue(st, storage.TriggerResync)
	}
}

// errClusterDown marks a sync that did not run because its cluster's API
// server does not answer.
var errClusterDown = errors.New("cluster unreachable")

// destinationCluster names the cluster an app's destination picks:
// InClusterName for fjord's own (destination.name in-cluster, server
// https://kubernetes.default.svc, or the kubeconfig's own server URL),
// else the stored cluster of that name or server.
func (r *Reconciler) destinationCluster(d Destination) (string, error) {
	switch {
	case d.Name == InClusterName, d.Name == "" && isInClusterServer(d.Server):
		return InClusterName, nil
	case d.Name != "":
		if _, err := r.store.Cluster(d.Name); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return "", fmt.Errorf("spec.destination.name: %q is no cluster of this fjord: add it with `fjord cluster add %s --kubeconfig FILE` (`fjord cluster list` shows them), or use %s", d.Name, d.Name, InClusterName)
			}
			return "", err
		}
		return d.Name, nil
	case sameServer(d.Server, r.local.server):
		return InClusterName, nil
	}
	for _, c := range r.storedClusters() {
		if sameServer(c.Server, d.Server) {
			return c.Name, nil
		}
	}
	return "", fmt.Errorf("spec.destination.server: %q is no cluster of this fjord: add it with `fjord cluster add NAME --kubeconfig FILE` (`fjord cluster list` shows them), or use %s", d.Server, InClusterServer)
}

// storageMeta is app.storageMeta with the cluster it deploys to, so that
// `fjord cluster delete` can refuse while it does.
func (r *Reconciler) storageMeta(app *Application, parent string) storage.AppMeta {
	m := app.storageMeta(parent)
	if name, err := r.destinationCluster(app.Spec.Destination); err == nil && name != InClusterName {
		m.Cluster = name
	}
	return m
}

// clusterNamed returns the clients of a cluster, built from storage on
// first use.
func (r *Reconciler) clusterNamed(name string) (*cluster, error) {
	r.clustersMu.Lock()
	c := r.clusters[name]
	r.clustersMu.Unlock()
	if c != nil {
		return c, nil
	}
	sc, err := r.store.Cluster(name)
	if err != nil {
		return nil, err
	}
	creds, err := r.store.ClusterCredentials(sc)
	if err != nil {
		return nil, err
	}
	nc, err := r.newCluster(name, clusterRESTConfig(sc, creds))
	if err != nil {
		return nil, err
	}
	r.clustersMu.Lock()
	defer r.clustersMu.Unlock()
	if c = r.clusters[name]; c != nil {
		return c, nil // built by another sync meanwhile
	}
	r.clusters[name] = nc
	return nc, nil
}

// clusterFor resolves the cluster of an app's destination, records it on
// st, and fails with errClusterDown while its API server is away.
func (r *Reconciler) clusterFor(st *appState, app *Application) (*cluster, error) {
	name, err := r.destinationCluster(app.Spec.Destination)
	if err != nil {
		return nil, err
	}
	c, err := r.clusterNamed(name)
	if err != nil {
		return nil, err
	}
	if st != nil {
		st.mu.Lock()
		st.cluster = c
		st.mu.Unlock()
	}
	if c.down() {
		return c, c.downError()
	}
	return c, nil
}

// clusterOf is the cluster the app last resolved to; nil before its
// first sync.
func (st *appState) clusterOf() *cluster {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cluster
}

// appsOn names the apps whose destination is the cluster name.
func (r *Reconciler) appsOn(name string) []string {
	var out []string
	r.mu.Lock()
	states := make([]*appState, 0, len(r.apps))
	for _, st := range r.apps {
		states = append(states, st)
	}
	r.mu.Unlock()
	for _, st := range states {
		st.mu.Lock()
		app := st.app
		st.mu.Unlock()
		if app == nil {
			continue
		}
		if n, err := r.destinationCluster(app.Spec.Destination); err == nil && n == name {
			out = append(out, st.name)
		}
	}
	sort.Strings(out)
	return out
}

// startClusters gives the clusters a previous Run stopped new watches.
func (r *Reconciler) startClusters() {
	r.clustersMu.Lock()
	defer r.clustersMu.Unlock()
	for _, c := range r.clusters {
		c.start(r)
	}
}

// stopClusters ends every cluster's watches and probes.
func (r *Reconciler) stopClusters() {
	r.clustersMu.Lock()
	defer r.clustersMu.Unlock()
	for _, c := range r.clusters {
		c.stop()
	}
}

// down reports whether the cluster's API server is known not to answer.
func (c *cluster) down() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == storage.ClusterUnreachable
}

func (c *cluster) downError() error {
	_, lastErr := c.status()
	return fmt.Errorf("%w: cluster %s (%s) does not answer: %s; fjord retries by itself and syncs its apps when it is back", errClusterDown, c.name, c.server, lastErr)
}

// observe is told the outcome of every request sent to the cluster (its
// transport calls it): an answer means the API server is there, a
// transport error that it is away. Requests cut short by their own
// context say nothing.
func (r *Reconciler) observe(c *cluster, req *http.Request, err error) {
	if req.Context().Err() != nil {
		return
	}
	if err == nil {
		r.clusterUp(c)
		return
	}
	if isUnreachable(err) {
		r.clusterDown(c, err)
	}
}

// clusterUp marks a cluster Connected; when it was Unreachable its apps
// are synced again (the watches restarted by themselves).
func (r *Reconciler) clusterUp(c *cluster) {
	c.mu.Lock()
	was := c.state
	if was == storage.ClusterConnected || c.stopped {
		c.mu.Unlock()
		return
	}
	c.state, c.lastErr = storage.ClusterConnected, ""
	c.mu.Unlock()
	r.metrics.clusterUp.WithLabelValues(c.name).Set(1)
	if was != storage.ClusterUnreachable {
		return
	}
	apps := r.appsOn(c.name)
	r.log.Info("cluster is back; syncing its apps", "cluster", c.name, "server", c.server, "apps", len(apps))
	for _, name := range apps {
		r.enqueue(name, storage.TriggerResync)
	}
}

// clusterDown marks a cluster Unreachable and its apps Unknown with the
// error, and probes it until it answers again.
func (r *Reconciler) clusterDown(c *cluster, cause error) {
	msg := explainClusterError(c.server, cause).Error()
	c.mu.Lock()
	if c.state == storage.ClusterUnreachable || c.stopped {
		c.mu.Unlock()
		return
	}
	c.state, c.lastErr = storage.ClusterUnreachable, msg
	startProbe := !c.probing
	c.probing = true
	c.mu.Unlock()
	r.metrics.clusterUp.WithLabelValues(c.name).Set(0)
	apps := r.appsOn(c.name)
	r.log.Warn("cluster unreachable; its apps are Unknown until it answers", "cluster", c.name, "server", c.server, "apps", len(apps), "err", msg)
	for _, name := range apps {
		r.markUnknown(name, c)
	}
	if startProbe {
		go r.probe(c)
	}
}

// markUnknown sets an app of an unreachable cluster Unknown, with why.
func (r *Reconciler) markUnknown(name string, c *cluster) {
	msg := c.downError().Error()
	_ = r.store.UpdateAppStatus(name, func(s *storage.AppStatus) {
		s.Sync, s.Health, s.Error, s.Progress = storage.SyncUnknown, "Unknown", msg, nil
	})
}

// Probe timing while a cluster is away: the first retry soon, then
// backing off to a probe every clusterProbeMax.
const (
	clusterProbeMin = time.Second
	clusterProbeMax = 30 * time.Second
)

// probe asks an unreachable cluster for its version until it answers
// (observe then marks it up) or is stopped. Its watches retry by
// themselves too, but a cluster none of whose apps synced yet has none.
func (r *Reconciler) probe(c *cluster) {
	defer func() {
		c.mu.Lock()
		c.probing = false
		c.mu.Unlock()
	}()
	wait := clusterProbeMin
	stopped := c.watcher().done
	for {
		select {
		case <-stopped:
			return
		case <-time.After(wait):
		}
		if !c.down() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), clusterCheckTimeout)
		_ = c.disco.RESTClient().Get().AbsPath("/version").Do(ctx).Error()
		cancel()
		if !c.down() {
			return
		}
		wait = min(wait*2, clusterProbeMax)
	}
}

// clusterName is the name of the app's cluster for metrics; "" before it
// resolved one.
func clusterName(st *appState) string {
	if c := st.clusterOf(); c != nil {
		return c.name
	}
	return ""
}

// resolvedDestination fills in the server of a destination given by name
// and the name of one given by server, for the clusters fjord knows, so
// that a project destination naming either matches.
func (r *Reconciler) resolvedDestination(d Destination) Destination {
	name, err := r.destinationCluster(d)
	if err != nil {
		return d
	}
	if name == InClusterName {
		if d.Server == "" {
			d.Server = InClusterServer
		}
		if d.Name == "" {
			d.Name = InClusterName
		}
		return d
	}
	if d.Name == "" {
		d.Name = name
	}
	if d.Server == "" {
		if c, err := r.store.Cluster(name); err == nil {
			d.Server = c.Server
		}
	}
	return d
}
