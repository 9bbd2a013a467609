package testenv

// PIDs returns the process IDs of etcd and kube-apiserver, for tests that
// measure them.
func PIDs(e *Env) (etcd, apiserver int) {
	return e.etcd.cmd.Process.Pid, e.apiserver.cmd.Process.Pid
}

// Dir returns the Env's temporary directory.
func Dir(e *Env) string { return e.dir }
