//go:build !linux

package main

import "syscall"

// memberProcAttr keeps a member out of the terminal's process group where the platform has
// none of Linux's parent-death signal; the parent stops the members in order.
func memberProcAttr() *syscall.SysProcAttr { return nil }
