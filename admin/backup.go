package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/fjordhq/fjord/storage"
)

// BackupRequest is the body of POST /v1/backup.
type BackupRequest struct {
	// Dir is the absolute path of the backup directory to create; it
	// must not exist yet.
	Dir string `json:"dir"`
}

// backupLine is one line of the answer to POST /v1/backup, which streams
// newline-delimited JSON: progress lines, then the manifest or an error.
type backupLine struct {
	Progress string                  `json:"progress,omitempty"`
	Manifest *storage.BackupManifest `json:"manifest,omitempty"`
	Error    string                  `json:"error,omitempty"`
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if !decode(w, r, &req) {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(l backupLine) {
		enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	m, err := s.store.Backup(r.Context(), req.Dir, &storage.BackupOptions{
		HostKey:  s.hostKeyFile,
		Progress: func(msg string) { send(backupLine{Progress: msg}) },
	})
	if err != nil {
		s.log.Error("backup failed", "dir", req.Dir, "err", err)
		send(backupLine{Error: err.Error()})
		return
	}
	send(backupLine{Manifest: &m})
}

// Backup asks the server for a backup into dir (absolute, not existing)
// and calls progress with each step it reports.
func (c *Client) Backup(ctx context.Context, dir string, progress func(string)) (storage.BackupManifest, error) {
	var m storage.BackupManifest
	resp, err := c.stream(ctx, http.MethodPost, "/v1/backup", BackupRequest{Dir: dir})
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l backupLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return m, fmt.Errorf("admin API: backup: %w", err)
		}
		switch {
		case l.Error != "":
			return m, &APIError{Status: http.StatusInternalServerError, Message: l.Error}
		case l.Manifest != nil:
			return *l.Manifest, nil
		case progress != nil:
			progress(l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("admin API: backup: %w", err)
	}
	return m, fmt.Errorf("admin API: backup: the server stopped answering before the backup was complete; see its log, %s was not created", dir)
}
