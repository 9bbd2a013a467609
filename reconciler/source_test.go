package reconciler

import "testing"

func TestSameRemote(t *testing.T) {
	same := [][2]string{
		{"git@github.com:nordic-fintech/gitops-infra.git", "https://github.com/nordic-fintech/gitops-infra"},
		{"ssh://git@github.com/nordic-fintech/gitops-infra.git", "https://github.com/nordic-fintech/gitops-infra.git/"},
		{"https://GitHub.com/org/repo", "https://github.com/org/repo.git"},
	}
	for _, p := range same {
		if !sameRemote(p[0], p[1]) {
			t.Errorf("sameRemote(%q, %q) = false", p[0], p[1])
		}
	}
	differ := [][2]string{
		{"git@github.com:org/repo.git", "git@gitlab.com:org/repo.git"},
		{"https://github.com/org/repo", "https://github.com/org/repo2"},
	}
	for _, p := range differ {
		if sameRemote(p[0], p[1]) {
			t.Errorf("sameRemote(%q, %q) = true", p[0], p[1])
		}
	}
}
