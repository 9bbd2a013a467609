package reconciler

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one YAML or JSON document of a file: an Application or an
// AppProject, as `fjord app apply -f` and `fjord app validate -f` read them.
type Document struct {
	// Source is the file it came from; Index its place there, from 1.
	Source string
	Index  int
	// Kind and Name are what the document says it is ("" when unreadable).
	Kind string
	Name string
	Data []byte
}

// String names the document for one line of output: FILE#N KIND NAME.
func (d Document) String() string {
	s := fmt.Sprintf("%s#%d", d.Source, d.Index)
	if d.Kind != "" {
		s += " " + d.Kind
	}
	if d.Name != "" {
		s += " " + d.Name
	}
	return s
}

// ReadDocuments reads the documents of a file, of stdin ("-"), or of every
// *.yaml, *.yml and *.json file of a directory (not recursively), in name
// order. Documents that hold nothing (comments, a trailing ---) are left
// out.
func ReadDocuments(path string, stdin io.Reader) ([]Document, error) {
	if path == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return SplitDocuments("-", b)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = nil
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("%s holds no *.yaml, *.yml or *.json file", path)
		}
	}
	var out []Document
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs, err := SplitDocuments(f, b)
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	return out, nil
}

// SplitDocuments splits data at its '---' lines.
func SplitDocuments(source string, data []byte) ([]Document, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Document
	for i := 1; ; i++ {
		b, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		var raw any
		if yaml.Unmarshal(b, &raw) == nil && raw == nil {
			i--
			continue // nothing but comments or blank lines
		}
		_ = yaml.Unmarshal(b, &head)
		out = append(out, Document{Source: source, Index: i, Kind: head.Kind, Name: head.Metadata.Name, Data: b})
	}
}

// ValidateDocument checks one document offline, as `fjord app validate`
// does: an Application, an AppProject or an Argo CD cluster Secret, with
// every problem and its fix.
// Its project is not looked up (any name is accepted).
func ValidateDocument(d Document) error {
	switch d.Kind {
	case "AppProject":
		_, err := ParseProject(d.Data)
		return err
	case "Application", "ApplicationSet":
		_, err := ParseApplication(d.Data)
		return err
	case "":
		_, err := ParseApplication(d.Data)
		return err
	case "Secret":
		if IsClusterSecret(d.Data) {
			_, _, err := ClusterFromSecret(d.Data)
			return err
		}
		fallthrough
	default:
		return &AppError{Name: orDefault(d.Name, "(unnamed)"), Problems: []string{fmt.Sprintf("kind: %q: fjord reads Argo CD Applications and AppProjects here; put other objects in the repo an Application points at", d.Kind)}}
	}
}
