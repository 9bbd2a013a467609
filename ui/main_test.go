package ui_test

import (
	"testing"

	"github.com/fjordhq/fjord/internal/testenv"
)

// TestMain shares one kube-apiserver among the package's browser tests
// and stops it at the end.
func TestMain(m *testing.M) { testenv.Main(m) }
