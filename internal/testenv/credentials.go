package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// credentials are the files kube-apiserver is started with and the admin
// credential the tests use, all made fresh for each Env.
type credentials struct {
	caFile       string // PEM CA certificate that signed the serving certificate
	certFile     string // PEM serving certificate for 127.0.0.1, ::1 and localhost
	keyFile      string // PEM key of the serving certificate
	saPublicKey  string // PEM public key that verifies service-account tokens
	saPrivateKey string // PEM private key that signs service-account tokens
	tokenFile    string // --token-auth-file with the admin token
	token        string // the admin's bearer token, in group system:masters
}

// adminUser is the user name the admin token authenticates as.
const adminUser = "fjord-testenv-admin"

// writeCredentials makes the CA, the serving certificate, the
// service-account key pair and the admin token, and writes them under dir.
//
// The serving certificate is made here rather than left to
// kube-apiserver's --cert-dir so that the CA is known before the server
// starts and can go into the kubeconfig. ECDSA P-256 keys because they are
// made in microseconds, where RSA 2048 takes tens of milliseconds and more
// under load; kube-apiserver accepts them for both uses.
func writeCredentials(dir string) (*credentials, error) {
	c := &credentials{
		caFile:       filepath.Join(dir, "ca.crt"),
		certFile:     filepath.Join(dir, "apiserver.crt"),
		keyFile:      filepath.Join(dir, "apiserver.key"),
		saPublicKey:  filepath.Join(dir, "sa.pub"),
		saPrivateKey: filepath.Join(dir, "sa.key"),
		tokenFile:    filepath.Join(dir, "tokens.csv"),
	}

	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fjord-testenv-ca"},
		NotBefore:             now.Add(-time.Hour), // tolerate a clock that steps back
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("testenv: create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("testenv: parse CA certificate: %w", err)
	}

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: generate serving key: %w", err)
	}
	servingTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    caTmpl.NotBefore,
		NotAfter:     caTmpl.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTmpl, ca, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("testenv: create serving certificate: %w", err)
	}
	servingKeyDER, err := x509.MarshalPKCS8PrivateKey(servingKey)
	if err != nil {
		return nil, fmt.Errorf("testenv: encode serving key: %w", err)
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: generate service-account key: %w", err)
	}
	saKeyDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return nil, fmt.Errorf("testenv: encode service-account key: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("testenv: encode service-account public key: %w", err)
	}

	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("testenv: generate admin token: %w", err)
	}
	c.token = hex.EncodeToString(tok[:])
	// token,user,uid,groups: system:masters passes every RBAC check.
	tokens := fmt.Sprintf("%s,%s,%s,system:masters\n", c.token, adminUser, adminUser)

	files := []struct {
		path string
		data []byte
	}{
		{c.caFile, pemBlock("CERTIFICATE", caDER)},
		{c.certFile, pemBlock("CERTIFICATE", servingDER)},
		{c.keyFile, pemBlock("PRIVATE KEY", servingKeyDER)},
		{c.saPublicKey, pemBlock("PUBLIC KEY", saPubDER)},
		{c.saPrivateKey, pemBlock("PRIVATE KEY", saKeyDER)},
		{c.tokenFile, []byte(tokens)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("testenv: write credentials: %w", err)
		}
	}
	return c, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeKubeconfig writes a kubeconfig for the admin token to path. The CA
// is embedded rather than referenced so that the file still works when a
// test copies it elsewhere. JSON is valid YAML, and encoding/json quotes
// every value correctly without a YAML dependency.
func writeKubeconfig(path, server string, c *credentials) error {
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return fmt.Errorf("testenv: write kubeconfig: %w", err)
	}
	type named struct {
		Name    string         `json:"name"`
		Cluster map[string]any `json:"cluster,omitempty"`
		User    map[string]any `json:"user,omitempty"`
		Context map[string]any `json:"context,omitempty"`
	}
	const name = "fjord-testenv"
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []named{{Name: name, Cluster: map[string]any{
			"server":                     server,
			"certificate-authority-data": caPEM, // []byte marshals as base64, as kubeconfig wants
		}}},
		"users":           []named{{Name: adminUser, User: map[string]any{"token": c.token}}},
		"contexts":        []named{{Name: name, Context: map[string]any{"cluster": name, "user": adminUser}}},
		"current-context": name,
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("testenv: encode kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("testenv: write kubeconfig: %w", err)
	}
	return nil
}
