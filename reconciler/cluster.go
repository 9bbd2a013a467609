package reconciler

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
