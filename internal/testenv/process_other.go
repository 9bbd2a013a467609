//go:build !linux

package testenv

import "syscall"

// sysProcAttr has no portable way to tie a child's life to the parent's
// outside Linux; Stop, called from TestMain, is all there is.
func sysProcAttr() *syscall.SysProcAttr { return nil }
