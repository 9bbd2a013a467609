package ui

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// mirrorRow is one mirror of the mirrors page.
type mirrorRow struct {
	storage.Mirror
	// Lag is how long the mirror may have been behind its upstream: zero
	// after a successful last sync, else the time since the last success
	// (or since it was added), as `fjord mirror list` has it.
	Lag    time.Duration
	Events []storage.MirrorEvent
}

// maxMirrorEvents is how many force-push and deletion events a mirror
// shows.
const maxMirrorEvents = 20

func (h *Handler) mirrorsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	ms, err := h.store.Mirrors()
	if err != nil {
		h.log.Error("ui: mirrors page", "err", err)
		h.fail(w, r, v, http.StatusInternalServerError, "reading the mirrors failed; the server log says why")
		return
	}
	var rows []mirrorRow
	now := time.Now()
	for _, m := range ms {
		if !h.mayRead(v, m.Repo) {
			continue
		}
		row := mirrorRow{Mirror: m}
		if m.LastError != "" {
			since := m.Created
			if !m.LastSuccess.IsZero() {
				since = m.LastSuccess
			}
			row.Lag = now.Sub(since).Round(time.Second)
		}
		row.Events, _ = h.store.MirrorEvents(m.Repo, maxMirrorEvents)
		rows = append(rows, row)
	}
	h.render(w, http.StatusOK, "mirrors", page{Title: "Mirrors", Nav: "mirrors", V: v, Live: "mirrors", Data: rows})
}

// repoRow is one repo of the repos page.
type repoRow struct {
	storage.Repo
	Head     string
	HeadHash string
	Refs     int
	Changed  time.Time // the last push or mirror sync that moved a ref
	Size     int64
	Mirror   bool
}

func (h *Handler) reposPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	repos, err := h.store.Repos()
	if err != nil {
		h.log.Error("ui: repos page", "err", err)
		h.fail(w, r, v, http.StatusInternalServerError, "reading the repos failed; the server log says why")
		return
	}
	mirrors := map[string]bool{}
	if ms, err := h.store.Mirrors(); err == nil {
		for _, m := range ms {
			mirrors[m.Repo] = true
		}
	}
	var rows []repoRow
	for _, repo := range repos {
		if !h.mayRead(v, repo.Name) {
			continue
		}
		row := repoRow{Repo: repo, Mirror: mirrors[repo.Name]}
		if refs, ok := h.store.Refs(repo.Name); ok {
			row.Head, row.HeadHash, row.Refs, row.Changed = refs.Head, refs.HeadHash, len(refs.Refs), refs.Changed
		}
		rows = append(rows, row)
	}
	// Sizes walk the repos on disk: do them side by side.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range rows {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rows[i].Size = dirSize(h.store.RepoPath(rows[i].Name))
		})
	}
	wg.Wait()
	h.render(w, http.StatusOK, "repos", page{Title: "Repos", Nav: "repos", V: v, Live: "repos", Data: rows})
}

// dirSize is the bytes of the regular files under dir, as du counts a
// repo (objects, packs, refs).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
