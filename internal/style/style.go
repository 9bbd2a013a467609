// Package style holds fjord's one stylesheet, shared by the web UI and the
// bench HTML reports so that both look the same.
package style

import (
	_ "embed"
	"html/template"
)

//go:embed style.css
var css string

// CSS returns the stylesheet, typed for inlining in an html/template
// <style> element.
func CSS() template.CSS { return template.CSS(css) }
