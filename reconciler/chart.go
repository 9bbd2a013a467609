package reconciler

import "context"

// ChartSource gives the reconciler local copies of charts kept in Helm repositories.
type ChartSource interface {
	// Chart returns the path of a local chart archive (.tgz) of chart name from the Helm
	// repository at repoURL (https://… or oci://…) in the newest version that matches
	// version (an exact version or a semver range; empty means the newest), fetching and
	// keeping it when it is not local yet. The file does not change once returned.
	Chart(ctx context.Context, repoURL, name, version string) (path, resolved string, err error)
}
