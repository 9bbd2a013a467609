package reconciler_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchChart writes a chart of n objects (a tenth Deployments, a tenth
// Services, the rest ConfigMaps) whose every object carries the value
// release, which each round bumps in values.yaml.
func benchChart(w *work, n int) {
	w.write("big/Chart.yaml", "apiVersion: v2\nname: big\nversion: 0.1.0\n")
	w.write("big/values.yaml", fmt.Sprintf("count: %d\nrelease: r0\nimage: registry.example.com/app:1.0.0\n", n))
	w.write("big/templates/_helpers.tpl", `{{- define "big.meta" -}}
labels:
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  app.kubernetes.io/name: {{ .name }}
annotations:
  example.com/release: {{ .root.Values.release | quote }}
{{- end }}
`)
	w.write("big/templates/objects.yaml", `{{- range $i := until (int .Values.count) }}
{{- $name := printf "%s-o%d" $.Release.Name $i }}
{{- if eq (mod $i 10) 0 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  {{- include "big.meta" (dict "root" $ "name" $name) | nindent 2 }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ $name }}}
  template:
    metadata:
      labels: {app: {{ $name }}}
    spec:
      containers:
      - name: app
        image: {{ $.Values.image }}
        resources:
          limits: {cpu: 500m, memory: 128Mi}
{{- else if eq (mod $i 10) 1 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  {{- include "big.meta" (dict "root" $ "name" $name) | nindent 2 }}
spec:
  selector: {app: {{ printf "%s-o%d" $.Release.Name (sub $i 1) }}}
  ports:
  - port: 80
{{- else }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  {{- include "big.meta" (dict "root" $ "name" $name) | nindent 2 }}
data:
  key: value-{{ $i }}
{{- end }}
{{- end }}
`)
}

// helmCLI is the helm binary: on PATH, or built from the module cache at
// the version go.mod requires (helm.sh/helm/v3/cmd/helm) into dir.
func helmCLI(b *testing.B, dir string) string {
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "helm.sh/helm/v3").Output()
	if err != nil {
		b.Fatalf("find the Helm module: %v", err)
	}
	bin := filepath.Join(dir, "helm")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./cmd/helm")
	build.Dir = strings.TrimSpace(string(out))
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the helm CLI from %s: %v\n%s", build.Dir, err, out)
	}
	return bin
}

// helmTemplateApply times `helm template | kubectl apply --server-side`
// of chart into ns.
func (c *cluster) helmTemplateApply(helm, chart, release, ns string) time.Duration {
	c.t.Helper()
	start := time.Now()
	tmpl := exec.Command(helm, "template", release, chart, "--namespace", ns)
	var errb bytes.Buffer
	tmpl.Stderr = &errb
	apply := exec.Command("kubectl", "--kubeconfig", c.kubeconfig, "apply", "--server-side", "--field-manager=helm-bench", "-n", ns, "-f", "-")
	r, wr, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	tmpl.Stdout = wr
	apply.Stdin = r
	var aout bytes.Buffer
	apply.Stdout, apply.Stderr = &aout, &aout
	if err := apply.Start(); err != nil {
		c.t.Fatal(err)
	}
	terr := tmpl.Run()
	wr.Close()
	aerr := apply.Wait()
	r.Close()
	if terr != nil || aerr != nil {
		c.t.Fatalf("helm template | kubectl apply: %v, %v\n%s%s", terr, aerr, errb.String(), aout.String())
	}
	return time.Since(start)
}

// BenchmarkHelmChart measures, on the local API server and in one run,
// render + apply of a 200-object Helm chart: fjord from the push (the ref
// notification) to every object applied, against `helm template |
// kubectl apply --server-side` of the same chart into another namespace.
// Every round changes every object. Run it with `make bench`, or alone:
//
//	go test -run '^$' -bench HelmChart -benchtime 1x ./reconciler
func BenchmarkHelmChart(b *testing.B) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		b.Fatalf("kubectl is needed for the comparison: %v", err)
	}
	helm := helmCLI(b, b.TempDir())
	c := newCluster(b)
	ctx := context.Background()
	const n, rounds = 200, 10
	store := openStore(b, b.TempDir())
	w := newWork(b, store, "bench", "")
	benchChart(w, n)
	w.commit("chart")
	rec, _ := c.start(store)
	ns, nsH := c.env.Namespace(b), c.env.Namespace(b)
	name := "helm-bench-" + ns[len(ns)-6:]
	doc := fmt.Appendf(nil, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: %s\nspec:\n  source:\n    repoURL: bench\n    path: big\n    helm:\n      releaseName: big\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: %s\n  syncPolicy:\n    automated: {prune: true, selfHeal: true}\n", name, ns)
	if _, err := rec.Apply(ctx, doc); err != nil {
		b.Fatal(err)
	}
	if st := appStatus(b, store, name); st.Sync != "Synced" {
		b.Fatalf("first sync: %+v", st)
	}
	chart := filepath.Join(w.dir, "big")
	c.helmTemplateApply(helm, chart, "big", nsH) // create, as fjord's first sync did

	var push, peer, tmpl latencies
	for i := range rounds {
		w.sed("big/values.yaml", fmt.Sprintf("release: r%d", i), fmt.Sprintf("release: r%d", i+1))
		commit := w.push(fmt.Sprintf("r%d", i+1))
		t0 := time.Now()
		w.refresh()
		var done time.Time
		eventually(b, "push applied", func() (bool, string) {
			h, _ := store.AppSyncs(name, 1)
			if len(h) == 1 && h[0].Revision == commit && h[0].Error == "" && len(h[0].Changes) == n {
				done = h[0].Start.Add(h[0].Duration)
				return true, ""
			}
			return false, fmt.Sprintf("%+v", h)
		})
		push = append(push, done.Sub(t0))
		peer = append(peer, c.helmTemplateApply(helm, chart, "big", nsH))
		t1 := time.Now()
		if out, err := exec.Command(helm, "template", "big", chart, "--namespace", nsH).CombinedOutput(); err != nil {
			b.Fatalf("helm template: %v\n%s", err, out)
		}
		tmpl = append(tmpl, time.Since(t1))
	}
	ratio := float64(push.pct(50)) / float64(peer.pct(50))
	fmt.Fprintf(os.Stdout, "\nfjord vs helm template | kubectl apply --server-side, %d-object chart, local kube-apiserver (internal/testenv)\n", n)
	fmt.Fprintf(os.Stdout, "%-34s %s\n", "fjord (push → applied)", push)
	fmt.Fprintf(os.Stdout, "%-34s %s\n", "helm template | kubectl apply", peer)
	fmt.Fprintf(os.Stdout, "%-34s %s\n", "  of which helm template alone", tmpl)
	fmt.Fprintf(os.Stdout, "%-34s %.2f (p50 fjord / p50 peer; below 1 is faster)\n", "ratio", ratio)
	b.ReportMetric(float64(push.pct(50))/float64(time.Millisecond), "fjord-p50-ms")
	b.ReportMetric(float64(peer.pct(50))/float64(time.Millisecond), "peer-p50-ms")
	b.ReportMetric(ratio, "ratio")
}
