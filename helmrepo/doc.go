// Package helmrepo mirrors Helm chart repositories: HTTP repositories
// (index.yaml) and OCI registries. A Manager keeps each repository's last
// good index (or, for OCI, tag lists) on local disk and reads it again on an
// interval as a pull mirror does, and it fetches each chart version it is
// asked for once, checks its digest and that it is a well-formed chart, and
// keeps the archive under DATA/helm/NAME/charts. Rendering reads only those
// local copies, so a sync never waits on the internet and keeps working
// while a repository is down.
//
// The layout under the data directory:
//
//	DATA/helm/NAME/index.yaml          the last index read (HTTP repositories)
//	DATA/helm/NAME/tags/CHART.json     the last tag list read (OCI)
//	DATA/helm/NAME/charts/CHART-V.tgz  kept chart archives, never rewritten
//	DATA/credentials/helmrepo/NAME/    username and password, 0600
package helmrepo
