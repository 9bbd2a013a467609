package reconciler_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/reconciler"
)

const secretToken = "s3cr3t-token-value-0123456789"

// clusterSecret is an Argo CD cluster Secret with stringData.
func clusterSecret(name, server, config string, extra ...string) []byte {
	doc := `apiVersion: v1
kind: Secret
metadata:
  name: ` + name + `
  labels:
    argocd.argoproj.io/secret-type: cluster
type: Opaque
stringData:
  server: ` + server + `
  config: '` + config + `'
`
	for _, e := range extra {
		doc += "  " + e + "\n"
	}
	return []byte(doc)
}

func TestClusterFromSecret(t *testing.T) {
	// data (base64) as kubectl writes it: name, server, config.
	doc := []byte(`apiVersion: v1
kind: Secret
metadata:
  name: cluster-prod
  labels: {argocd.argoproj.io/secret-type: cluster}
data:
  name: ` + base64.StdEncoding.EncodeToString([]byte("prod")) + `
  server: ` + base64.StdEncoding.EncodeToString([]byte("https://prod.example.com:6443")) + `
  config: ` + base64.StdEncoding.EncodeToString([]byte(`{"bearerToken":"`+secretToken+`","tlsClientConfig":{"insecure":false,"serverName":"api.prod"}}`)) + `
`)
	if !reconciler.IsClusterSecret(doc) {
		t.Fatal("IsClusterSecret: false")
	}
	c, creds, err := reconciler.ClusterFromSecret(doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "prod" || c.Server != "https://prod.example.com:6443" || c.TLSServerName != "api.prod" || creds.Token != secretToken || c.Source != "secret cluster-prod" {
		t.Errorf("got %+v, token ok %v", c, creds.Token == secretToken)
	}
	// No data.name: the Secret's name.
	c, _, err = reconciler.ClusterFromSecret(clusterSecret("edge-1", "https://edge.example.com", `{"bearerToken":"`+secretToken+`"}`))
	if err != nil || c.Name != "edge-1" {
		t.Errorf("without data.name: %+v %v", c, err)
	}

	for _, tc := range []struct {
		name, want string
		doc        []byte
	}{
		{"exec", "execProviderConfig runs a program", clusterSecret("eks", "https://eks.example.com", `{"execProviderConfig":{"command":"argocd-k8s-auth","args":["aws"]}}`)},
		{"aws", "awsAuthConfig is not supported", clusterSecret("eks", "https://eks.example.com", `{"awsAuthConfig":{"clusterName":"x"}}`)},
		{"basic", "basic auth", clusterSecret("b", "https://b.example.com", `{"username":"admin","password":"`+secretToken+`"}`)},
		{"project", "project-scoped clusters are not supported", clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken+`"}`, "project: team-a")},
		{"namespaces", "namespaces: fjord does not limit a cluster to namespaces yet", clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken+`"}`, "namespaces: team-a,team-b")},
		{"clusterResources", "clusterResources: fjord does not limit", clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken+`"}`, "clusterResources: \"true\"")},
		{"unknown key", `key "proxy" is not one fjord knows`, clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken+`"}`, "proxy: x")},
		{"unknown config field", `unknown field "proxyUrl"`, clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken+`","proxyUrl":"http://x"}`)},
		{"config not JSON", "config is not JSON", clusterSecret("p", "https://p.example.com", `{"bearerToken":"`+secretToken)},
		{"no credential", "no credential", clusterSecret("p", "https://p.example.com", `{}`)},
		{"http", "want https://HOST", clusterSecret("p", "http://p.example.com", `{"bearerToken":"`+secretToken+`"}`)},
		{"password in an http URL", "holds a user name or password", clusterSecret("p", "http://admin:"+secretToken+"@p.example.com", `{"bearerToken":"x"}`)},
		{"password in the URL", "holds a user name or password", clusterSecret("p", "https://admin:"+secretToken+"@p.example.com", `{"bearerToken":"x"}`)},
		{"password in a URL that does not parse", "holds a user name or password", clusterSecret("p", "https://admin:"+secretToken+"%zz@p.example.com", `{"bearerToken":"x"}`)},
		{"in-cluster", "fjord's own cluster", clusterSecret("p", "https://kubernetes.default.svc", `{"bearerToken":"`+secretToken+`"}`)},
		{"bad name", "cluster name", clusterSecret("Prod_1", "https://p.example.com", `{"bearerToken":"`+secretToken+`"}`)},
		{"half a cert", "both its certificate and its key", clusterSecret("p", "https://p.example.com", `{"tlsClientConfig":{"certData":"`+base64.StdEncoding.EncodeToString([]byte("x"))+`"}}`)},
	} {
		_, _, err := reconciler.ClusterFromSecret(tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secretToken) {
			t.Errorf("%s: the error holds the secret: %v", tc.name, err)
		}
	}
}

// TestClusterFromKubeconfig reads a context with a client certificate in
// files named relative to the kubeconfig, and refuses what fjord cannot
// run or use, naming the fix.
func TestClusterFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	os.MkdirAll(filepath.Join(dir, "certs"), 0o700)
	os.WriteFile(filepath.Join(dir, "certs", "client.crt"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "certs", "client.key"), keyPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "certs", "ca.crt"), certPEM, 0o600)
	kc := filepath.Join(dir, "config")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: edge
  cluster: {server: "https://10.1.0.10:6443", certificate-authority: certs/ca.crt}
- name: plain
  cluster: {server: "http://10.1.0.11:8080"}
users:
- name: admin
  user: {client-certificate: certs/client.crt, client-key: certs/client.key}
- name: sso
  user:
    auth-provider: {name: oidc}
- name: basic
  user: {username: admin, password: `+secretToken+`}
- name: nocert
  user: {client-certificate: certs/missing.crt, client-key: certs/client.key}
contexts:
- name: edge
  context: {cluster: edge, user: admin}
- name: oidc
  context: {cluster: edge, user: sso}
- name: basic
  context: {cluster: edge, user: basic}
- name: plain
  context: {cluster: plain, user: admin}
- name: missing
  context: {cluster: edge, user: nocert}
`), 0o600)
	c, creds, err := reconciler.ClusterFromKubeconfig(kc, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "https://10.1.0.10:6443" || string(creds.Cert) != string(certPEM) || string(creds.Key) != string(keyPEM) || string(creds.CA) != string(certPEM) || creds.Token != "" {
		t.Errorf("edge: %+v", c)
	}
	for _, tc := range []struct{ context, want string }{
		{"", "has no current-context: name one with --context (it has basic, edge, missing, oidc, plain)"},
		{"nope", `no context "nope"`},
		{"oidc", "oidc auth-provider, which fjord does not run"},
		{"basic", "basic auth"},
		{"plain", "want https://HOST"},
		{"missing", "unable to read client-cert"},
	} {
		_, _, err := reconciler.ClusterFromKubeconfig(kc, tc.context)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("context %q: %v, want it to say %q", tc.context, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), secretToken) || strings.Contains(err.Error(), "PRIVATE KEY")) {
			t.Errorf("context %q: the error holds a secret: %v", tc.context, err)
		}
	}
	if _, _, err := reconciler.ClusterFromKubeconfig(filepath.Join(dir, "nope"), ""); err == nil || !strings.Contains(err.Error(), "read kubeconfig") {
		t.Errorf("missing file: %v", err)
	}
}

// selfSigned makes a PEM certificate and key (a client certificate and
// its own CA, for the parse only).
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fjord"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}
